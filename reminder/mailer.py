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

A mail the server accepted is never sent again by the same mailer, even when its `sent`
mark is lost. FerretDB (v1, SQLite) applies an update by reading the document and writing
the whole of it back, without holding it in between: two updates of one entry from two
processes both match `status: pending`, and the later write puts back the fields the
earlier one changed. A failure recorded by another mailer at the moment this one marks
the mail sent can so leave it `pending` (the 10,000-task chaos run mailed support twice
that way, the other mailer being a stray one of an earlier run). The mailer therefore
remembers the entries the server accepted from it: finding one pending again, it marks
it sent again (`mail.sent_mark_lost`) instead of sending it.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog
import tenacity

from reminder.errors import MailRejected, MailUnavailable
from store.outbox import Outbox, OutboxEntry

log = structlog.get_logger("dossierflow.reminder")

ACCEPTED_MEMORY = 10_000  # entries accepted by the server a mailer remembers (see above)


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
        # Entry -> when the server accepted it, the latest ACCEPTED_MEMORY of them: a lost
        # `sent` mark comes back within one update's time, long before these are forgotten.
        self._accepted: OrderedDict[str, datetime] = OrderedDict()

    def deliver(self, limit: int = 500) -> DeliveryReport:
        """Send what is pending; stop at the first entry the server stays unreachable for."""
        report = DeliveryReport()
        pending = self._outbox.pending(limit)
        for index, entry in enumerate(pending):
            accepted_at = self._accepted.get(entry.id)
            if accepted_at is not None:
                # The server has it from us: only our mark was lost (see the module's doc).
                self._outbox.mark_sent(entry.id, accepted_at)
                log.warning("mail.sent_mark_lost", entry=entry.id, kind=entry.kind)
                continue
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
                self._remember(entry.id, self._clock())
                self._outbox.mark_sent(entry.id, self._accepted[entry.id])
                log.info("mail.sent", entry=entry.id, kind=entry.kind, office=entry.office)
                report.sent += 1
        return report

    def _remember(self, entry_id: str, accepted_at: datetime) -> None:
        self._accepted[entry_id] = accepted_at
        while len(self._accepted) > ACCEPTED_MEMORY:
            self._accepted.popitem(last=False)

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
