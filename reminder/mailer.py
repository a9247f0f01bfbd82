"""Sending the outbox over SMTP, with retries while the server is down.

Delivery guarantee. Deciding to send a mail is one insert into the `mail_outbox`
collection under a unique key (`instruction:<id>:<user>`, `digest:<user>:<day>`), holding
the fully rendered message with a fixed Message-ID. The mailer then hands the message to
the SMTP server and, only after the server has accepted it (the 250 reply to DATA),
marks the entry `sent`. So every decided mail goes out *at least once*: if the process
dies, or the connection drops, between the server's acceptance and our `sent` mark, the
entry is still `pending` and the next run sends it again, byte for byte, with the same
Message-ID, so mail clients and ticket systems that deduplicate on Message-ID show it
once. Exactly-once cannot be had over SMTP: the server's acceptance and our database
write are two separate commits with no shared transaction, and the server's reply can be
lost after it has queued the mail (RFC 1047), so the sender cannot tell "not sent" from
"sent, reply lost". Of the two possible failures we choose a rare duplicate over a lost
instruction mail: marking `sent` before sending would make a crash lose the mail. The
unique keys make every other case once only: running a command twice, two overlapping
runs deciding the same mail, and retries after the SMTP server was down.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog
import tenacity

from reminder.errors import MailRejected, MailUnavailable
from store.outbox import Outbox, OutboxEntry

log = structlog.get_logger("dossierflow.reminder")


class Transport(Protocol):
    """Something that hands a message to a mail server."""

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> None:
        """Deliver or raise MailUnavailable (try later) / MailRejected (never)."""


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to reach the SMTP server."""

    host: str
    port: int
    security: str = "none"  # none | starttls | tls
    user: str = ""
    password: str = ""
    timeout_s: float = 30.0


class SmtpTransport:
    """smtplib over plain TCP, STARTTLS or implicit TLS, with optional login."""

    def __init__(self, config: SmtpConfig, tls: ssl.SSLContext | None = None) -> None:
        self._config = config
        self._tls = tls

    def _connect(self) -> smtplib.SMTP:
        c = self._config
        context = self._tls or ssl.create_default_context()
        if c.security == "tls":
            return smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=context)
        smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        if c.security == "starttls":
            smtp.starttls(context=context)
        return smtp

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> None:
        """Deliver one message; map smtplib's errors to ours."""
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            raise MailUnavailable(f"cannot reach the SMTP server: {type(exc).__name__}") from exc
        try:
            if self._config.user:
                smtp.login(self._config.user, self._config.password)
            refused = smtp.sendmail(sender, list(recipients), message)
        except smtplib.SMTPAuthenticationError as exc:
            # A configuration problem: keep the mail pending until somebody fixes it.
            raise MailUnavailable(f"SMTP login refused ({exc.smtp_code})") from exc
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, type(exc).__name__) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise _by_code(min(codes, default=550), "every recipient refused") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise MailUnavailable(f"SMTP send failed: {type(exc).__name__}") from exc
        finally:
            _quietly_quit(smtp)
        if refused:
            log.warning("mail.recipients_refused", refused=len(refused))


def _by_code(code: int, what: str) -> MailUnavailable | MailRejected:
    kind = MailRejected if 500 <= code < 600 else MailUnavailable
    return kind(f"SMTP server answered {code}: {what}")


def _quietly_quit(smtp: smtplib.SMTP) -> None:
    # The server has the mail or not by now; a failing QUIT must not make us resend it.
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


@dataclass
class DeliveryReport:
    """What one pass over the outbox did."""

    sent: int = 0
    rejected: int = 0
    deferred: int = 0  # still pending: the server was unreachable


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one send while the server is unreachable, before leaving it pending."""

    attempts: int = 5
    first_wait_s: float = 1.0
    max_wait_s: float = 30.0


class Mailer:
    """Sends pending outbox entries; safe to run in several processes (at-least-once)."""

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._outbox = outbox
        self._transport = transport
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock

    def deliver(self, limit: int = 500) -> DeliveryReport:
        """Send what is pending; stop at the first entry the server stays unreachable for."""
        report = DeliveryReport()
        pending = self._outbox.pending(limit)
        for index, entry in enumerate(pending):
            try:
                self._send_with_retries(entry)
            except MailRejected as exc:
                self._outbox.record_failure(entry.id, str(exc), permanent=True)
                log.error("mail.rejected", entry=entry.id, error=str(exc))
                report.rejected += 1
            except MailUnavailable as exc:
                report.deferred = len(pending) - index
                log.warning(
                    "mail.deferred", entry=entry.id, pending=report.deferred, error=str(exc)
                )
                return report
            else:
                self._outbox.mark_sent(entry.id, self._clock())
                log.info("mail.sent", entry=entry.id, kind=entry.kind, office=entry.office)
                report.sent += 1
        return report

    def _send_with_retries(self, entry: OutboxEntry) -> None:
        def attempt() -> None:
            try:
                self._transport.send(entry.sender, entry.recipients, entry.message)
            except MailUnavailable as exc:
                self._outbox.record_failure(entry.id, str(exc), permanent=False)
                raise

        policy = self._retry
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.attempts),
            wait=tenacity.wait_exponential(
                multiplier=policy.first_wait_s, min=policy.first_wait_s, max=policy.max_wait_s
            ),
            retry=tenacity.retry_if_exception_type(MailUnavailable),
            sleep=self._sleep,
            reraise=True,
        )
        retrying(attempt)
