"""`dossierflow reminder ...`: the reminder package's commands (a plugin of dossierflow.cli).

dossierflow reminder mail [--once] [--interval SECONDS]
dossierflow reminder run [--date YYYY-MM-DD] [--dry-run]
dossierflow reminder sink [--host HOST] [--port PORT] --dir PATH
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Sequence

import structlog

from dossierflow.settings import Settings
from dossierflow.signals import stop_on_signals

log = structlog.get_logger("dossierflow.reminder")

Command = Callable[[Settings, argparse.Namespace], int]


def cmd_mail(settings: Settings, args: argparse.Namespace) -> int:
    """Mail new instructions: one pass with --once, else every --interval seconds."""
    from reminder.mailer import Mailer, SmtpTransport
    from reminder.service import mail_instructions
    from store import Store, StoreError

    ctx = settings.mail_context()
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    outbox = store.outbox
    mailer = Mailer(outbox, SmtpTransport(settings.smtp()))
    stop = threading.Event() if args.once else stop_on_signals()
    status = 0
    try:
        outbox.ensure_indexes()
        while True:
            try:
                result = mail_instructions(store, outbox, mailer, ctx)
                d = result.delivery
                log.info("mail.pass", decided=result.decided, sent=d.sent, deferred=d.deferred)
                status = 1 if d.deferred or d.rejected or result.unknown_offices else 0
            except StoreError as exc:
                log.error("mail.pass_failed", error=str(exc))
                status = 1
            if args.once or stop.wait(args.interval):
                return status
    finally:
        store.close()


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Send the digest due on --date (default: each office's today); --dry-run only prints."""
    from reminder.dryrun import print_dry_run
    from reminder.mailer import Mailer, SmtpTransport
    from reminder.service import (
        CREATE_OFFICE,
        plan_reminders,
        run_reminders,
        unknown_offices,
    )
    from store import Store

    ctx = settings.mail_context()
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    outbox = store.outbox
    try:
        if args.dry_run:
            print_dry_run(plan_reminders(store, ctx, args.date), ctx, outbox, sys.stdout)
            unknown = unknown_offices(store, {o.id for o in store.offices.all()})
            return _unknown(unknown, CREATE_OFFICE)
        outbox.ensure_indexes()
        mailer = Mailer(outbox, SmtpTransport(settings.smtp()))
        result = run_reminders(store, outbox, mailer, ctx, on=args.date)
        d = result.delivery
        print(
            f"reminder run: {result.decided} digest(s) decided; sent {d.sent}, "
            f"still pending {d.deferred}, refused {d.rejected}"
        )
        # Non-zero lets cron / the CronJob show that mails are waiting for the SMTP server.
        return max(
            1 if d.deferred or d.rejected else 0, _unknown(result.unknown_offices, CREATE_OFFICE)
        )
    finally:
        store.close()


def _unknown(offices: Sequence[str], hint: str) -> int:
    """Say which offices of open instructions do not exist (no time zone, no digest)."""
    if not offices:
        return 0
    print(
        f"reminder run: open instructions of unknown office(s) {', '.join(offices)} get no "
        f"reminder; {hint}",
        file=sys.stderr,
    )
    return 1


def cmd_sink(settings: Settings, args: argparse.Namespace) -> int:
    """Run a local SMTP sink until SIGTERM or Ctrl-C."""
    from reminder.sink import SmtpSink

    stop = stop_on_signals()
    sink = SmtpSink(args.host, args.port, args.dir)
    sink.start()
    print(f"SMTP sink on {args.host}:{args.port}, storing mails in {args.dir}", flush=True)
    try:
        stop.wait()
    finally:
        sink.stop()
    return 0
