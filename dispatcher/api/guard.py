"""The page's doors: where a POST may come from, the session cookie, the security headers.

Every POST of the page (login and logout included) must come from the page itself: a
browser sends `Sec-Fetch-Site` and `Origin` on a POST, and a form posted from another
site gets a 403 before anything is read. A client that sends neither (curl, tests) is
not a browser and carries no ambient cookie of a victim, so it passes this check (the
CSRF token still applies to the forms behind a login).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatcher.api.problems import Problem
from dispatcher.settings import Settings, SettingsError

SECURE_COOKIE = "__Host-dossierflow"  # Secure, Path=/ and no Domain: only this host sets it
PLAIN_COOKIE = "dossierflow_session"  # the local mode over plain http
_SAME = frozenset({"same-origin", "none"})  # "none": typed in the address bar, a bookmark
CSP = (
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
HSTS = "max-age=31536000"
_DOCS = ("/docs", "/openapi.json")  # Swagger UI loads its script from a CDN: no CSP there


@dataclass(frozen=True)
class Door:
    """The page's cookie and CSRF key, as the settings want them."""

    secure: bool
    secret: bytes
    base_origin: str  # DOSSIERFLOW_MONITORING_BASE_URL's origin: the page behind a proxy

    @property
    def cookie(self) -> str:
        """The session cookie's name (`__Host-` prefixed when Secure)."""
        return SECURE_COOKIE if self.secure else PLAIN_COOKIE

    @classmethod
    def of(cls, settings: Settings, secret: bytes | None = None) -> Door:
        """The door of these settings; outside the local mode a CSRF secret is required."""
        key = secret or settings.csrf_secret.encode()
        if not key:
            if not settings.local:
                raise SettingsError(
                    "DOSSIERFLOW_CSRF_SECRET is required outside the local mode "
                    "(the same value on every API replica, at least 32 characters)"
                )
            key = secrets.token_bytes(32)
        return cls(settings.secure_cookie, key, _origin(settings.monitoring_base_url))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def check_origin(door: Door, headers: dict[str, str], host: str) -> None:
    """403 for a POST that a browser sent from another site."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in _SAME:
        raise Problem(403, "forbidden", "the form was sent from another site")
    origin = headers.get("origin")
    if origin is None:
        return
    own = {door.base_origin, f"http://{host}".lower(), f"https://{host}".lower()}
    if origin.lower() not in own:
        raise Problem(403, "forbidden", "the form was sent from another site")


class SecurityHeaders:
    """Adds the security headers to every answer (ASGI middleware)."""

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if not path.startswith(_DOCS):
                    headers.setdefault("Content-Security-Policy", CSP)
                if not path.startswith("/static/"):
                    headers.setdefault("Cache-Control", "no-store")
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
