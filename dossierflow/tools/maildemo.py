"""The demo's mail step: a local SMTP sink receives the instruction mails of the failures.

`dossierflow demo` calls `mail_failures` after its workload: every open instruction is
mailed once (orange to the dossier's people, red to support) into `.eml` files the
user can open, and the summary says how many and where.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from pathlib import Path

from dossierflow.settings import Settings
from reminder.mailer import Mailer, RetryPolicy, SmtpTransport
from reminder.service import mail_instructions
from reminder.sink import SmtpSink
from store.mongo import Store


@dataclass(frozen=True)
class MailSummary:
    """What the demo's mail step did."""

    decided: int
    sent: int
    pending: int
    maildir: Path
    files: tuple[Path, ...]

    def describe(self) -> str:
        """One line for the demo's output."""
        return (
            f"instruction mails: {self.sent} sent ({self.pending} pending) to a local SMTP "
            f"sink; {len(self.files)} .eml files in {self.maildir} (open them with any mail "
            "client)"
        )


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def mail_failures(settings: Settings, store: Store, maildir: Path) -> MailSummary:
    """Start a sink on a free local port, mail every open instruction into it, stop it."""
    host = "127.0.0.1"
    port = _free_port(host)
    mine = replace(settings, smtp_host=host, smtp_port=port, smtp_security="none", smtp_user="")
    outbox = store.outbox
    outbox.ensure_indexes()
    transport = SmtpTransport(mine.smtp())
    # A local sink either answers at once or not at all: do not wait minutes for it.
    mailer = Mailer(outbox, transport, RetryPolicy(attempts=3, first_wait_s=0.2, max_wait_s=1))
    with SmtpSink(host, port, maildir) as sink:
        result = mail_instructions(store, outbox, mailer, mine.mail_context())
    return MailSummary(
        decided=result.decided,
        sent=result.delivery.sent,
        pending=result.delivery.deferred,
        maildir=maildir,
        files=tuple(sink.files()),
    )
