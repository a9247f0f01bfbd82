"""A local SMTP server that keeps every mail as a `.eml` file (tests and the demo).

It accepts any sender and recipient, never relays, and writes each message with the
envelope recipients prepended as `X-Sink-Rcpt-To` headers (like an MDA's Delivered-To),
so a reader sees who the mail was handed to even when headers say otherwise.

A `SinkWatch` may look at each message as it arrives (the chaos run kills the mailer
there, just before the sink keeps the message or just after).
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

log = structlog.get_logger("dossierflow.reminder")


class SinkWatch(Protocol):
    """Called on the server's thread for each message, once its data has arrived."""

    def before_store(self) -> bool:
        """False: the message is dropped and refused (451), as if it never got through."""

    def after_store(self) -> None:
        """The message is kept; the client has not had the 250 reply yet."""


class _Maildir:
    """aiosmtpd handler: one file per message, named in arrival order."""

    def __init__(self, directory: Path, watch: SinkWatch | None = None) -> None:
        self.directory = directory
        self._watch = watch
        self._lock = threading.Lock()
        self._counter = itertools.count(len(list(directory.glob("*.eml"))) + 1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        rcpt = b"".join(
            b"X-Sink-Rcpt-To: " + address.encode("utf-8", "replace") + b"\r\n"
            for address in envelope.rcpt_tos
        )
        if self._watch is not None and not self._watch.before_store():
            return "451 Requested action aborted: local error in processing"
        with self._lock:
            name = f"{next(self._counter):06d}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(rcpt + content)
        # Rename is atomic: a reader never sees half a message.
        os.replace(tmp, self.directory / name)
        log.debug("sink.stored", file=name, recipients=len(envelope.rcpt_tos))
        if self._watch is not None:
            self._watch.after_store()
        return "250 Message accepted for delivery"


class _Login:
    """aiosmtpd authenticator accepting exactly one user and password."""

    def __init__(self, user: str, password: str) -> None:
        self._expected = (user.encode(), password.encode())

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self._expected
        # handled=False: aiosmtpd then answers 535 itself (its default assumes we did).
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


class SmtpSink:
    """An aiosmtpd server on `host:port` that stores mail in `maildir`.

    With `tls` it speaks STARTTLS (required) or, with `implicit_tls`, TLS from the first
    byte; with `login` it requires that user and password after STARTTLS (aiosmtpd offers
    AUTH only once STARTTLS is done, so login and implicit TLS do not combine).
    """

    def __init__(
        self,
        host: str,
        port: int,
        maildir: Path,
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        login: tuple[str, str] | None = None,
        watch: SinkWatch | None = None,
    ) -> None:
        if login is not None and (tls is None or implicit_tls):
            raise ValueError("the sink requires a login only together with STARTTLS")
        self.host = host
        self.port = port
        self.maildir = maildir
        self._tls = tls
        self._implicit_tls = implicit_tls
        self._login = login
        self._watch = watch
        self._controller: Controller | None = None

    def _security(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self._tls is not None and self._implicit_tls:
            options["ssl_context"] = self._tls
        elif self._tls is not None:
            options.update(tls_context=self._tls, require_starttls=True)
        if self._login is not None:
            options.update(authenticator=_Login(*self._login), auth_required=True)
        return options

    def start(self) -> None:
        """Listen (returns once the server answers); idempotent."""
        if self._controller is not None:
            return
        self.maildir.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            _Maildir(self.maildir, self._watch),
            hostname=self.host,
            port=self.port,
            ready_timeout=10.0,
            # Keep the raw bytes: we store exactly what the client sent.
            decode_data=False,
            **self._security(),
        )
        controller.start()
        self._controller = controller
        log.info("sink.started", host=self.host, port=self.port)

    def stop(self) -> None:
        """Stop listening; stored messages stay."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            log.info("sink.stopped", host=self.host, port=self.port)

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._controller is not None

    def files(self) -> list[Path]:
        """The stored messages, in arrival order."""
        return sorted(self.maildir.glob("*.eml"))

    def messages(self) -> list[EmailMessage]:
        """Every stored message, parsed, in arrival order."""
        parsed = []
        for path in self.files():
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
