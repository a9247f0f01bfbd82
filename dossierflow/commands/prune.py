"""`dossierflow prune`: prune what is older than the retention, now (dispatcher/retention.py)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from dataclasses import replace

from dispatcher.retention import Pruner
from dossierflow.settings import Settings
from dossierflow.signals import stop_on_signals
from store import Store
from store.retention import PruneReport


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Prune until nothing older than the retention is left (or only count, with --dry-run)."""
    days = settings.retention_days if args.days is None else args.days
    if days <= 0:
        print("dossierflow prune: retention is off (0 days): nothing to do", file=sys.stderr)
        return 2
    settings = replace(settings, retention_days=days)
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    name = f"prune@{socket.gethostname()}:{os.getpid()}"
    stop = stop_on_signals()
    pruner = Pruner(settings, store, name, stop, budget_s=60.0)
    total = PruneReport(complete=False)
    try:
        while not total.complete and not stop.is_set():
            report = pruner.run(dry_run=args.dry_run)
            if report is None:
                print("dossierflow prune: another process is pruning", file=sys.stderr)
                return 1
            total.tasks += report.tasks
            total.instructions += report.instructions
            total.mails += report.mails
            total.batches += report.batches
            total.complete = report.complete
    finally:
        store.close()
    out = {"dry_run": args.dry_run, "cutoff": pruner.cutoff().isoformat(), **total.as_dict()}
    if args.json:
        print(json.dumps(out))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(
            f"{verb} {total.tasks} tasks, {total.instructions} instructions and "
            f"{total.mails} mails older than {days} days (before {out['cutoff']})"
        )
    return 0
