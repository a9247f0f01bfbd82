"""Safe defaults: outside the local mode, refuse service settings an attacker would love.

Checked on every service URL that names another machine (traffic to a loopback address
never leaves the host, and a default URL a process does not use stays loopback): the
broker's `guest` login, a database without credentials, plaintext `amqp://`, `http://`
(management API) and `mongodb://` without TLS unless `DOSSIERFLOW_ALLOW_PLAINTEXT` says
the network is trusted. (SMTP credentials sent without TLS are refused by
`dossierflow.settings`, which holds the mail settings.) Pure: settings in, the
first refusal out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from broker.addresses import split_urls

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_TLS_SCHEMES = frozenset({"amqps", "https", "mongodb+srv"})  # +srv turns TLS on by default
_ON = frozenset({"true", "1", "yes"})


def host(url: str) -> str:
    """The host of a service URL, lower case ("" when it has none)."""
    return (urlsplit(url).hostname or "").lower()


def _remote(name: str, value: str) -> Iterator[tuple[str, str]]:
    for url in split_urls(value):
        if host(url) not in LOOPBACK:
            yield name, url


def _tls(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in _TLS_SCHEMES:
        return True
    query = {k.lower(): v for k, v in parse_qs(parts.query).items()}
    return any(v[-1].lower() in _ON for k, v in query.items() if k in ("tls", "ssl"))


class ServiceSettings(Protocol):
    """The settings this module checks (dispatcher.settings.Settings has them)."""

    @property
    def amqp_url(self) -> str: ...
    @property
    def rabbitmq_api(self) -> str: ...
    @property
    def mongo_url(self) -> str: ...
    @property
    def allow_plaintext(self) -> bool: ...


def refusal(settings: ServiceSettings) -> str | None:
    """Why these settings must not run outside the local mode, or None."""
    remote = [
        *_remote("DOSSIERFLOW_AMQP_URL", settings.amqp_url),
        *_remote("DOSSIERFLOW_RABBITMQ_API", settings.rabbitmq_api),
        *_remote("DOSSIERFLOW_MONGO_URL", settings.mongo_url),
    ]
    for name, url in remote:
        parts = urlsplit(url)
        if (parts.username or "").lower() == "guest":
            return f"{name} logs in as guest: give each process its own broker user"
        if (
            name == "DOSSIERFLOW_MONGO_URL"
            and not parts.username
            and "authmechanism=" not in (parts.query.lower())
        ):
            return f"{name} names no user: the database must require authentication"
        if not _tls(url) and not settings.allow_plaintext:
            return (
                f"{name} is not encrypted ({parts.scheme}://): use amqps://, https:// or "
                "tls=true, or set DOSSIERFLOW_ALLOW_PLAINTEXT=on on a network you trust"
            )
    return None
