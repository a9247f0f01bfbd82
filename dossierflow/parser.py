"""The whole `dossierflow` command line, with no I/O and no imports of what the commands run.

Every leaf command names the function that runs it as `"module:function"` (`RUN`); the
CLI imports that module only once the arguments are parsed, so `dossierflow worker`
loads neither the API nor the mail code. Choices are spelled here rather than read from
the enums of the packages, and a unit test checks they agree.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

RUN = "run"  # the attribute of the parsed arguments naming the function to run
LANGUAGES = ("nl", "fr", "en")
ROLES = ("admin", "dossier_manager", "support", "platform")
TASK_STATUSES = (
    "submitted", "waiting", "queued", "running", "retry_wait", "done", "failed", "cancelled",
    "skipped",
)  # fmt: skip
SEVERITIES = ("orange", "red")

_PROCESSES = "dossierflow.commands.processes"
_TOOLS = "dossierflow.commands.tools"
_OPS = "dossierflow.commands.ops"
_API = "dossierflow.commands.api"
_ONBOARDING = "dossierflow.commands.onboarding"
_REMINDER = "dossierflow.commands.reminder"
_PRUNE = "dossierflow.commands.prune"


def _runs(parser: argparse.ArgumentParser, module: str, function: str) -> argparse.ArgumentParser:
    parser.set_defaults(**{RUN: f"{module}:{function}"})
    return parser


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _update(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--update",
        action="store_true",
        help=f"change the {what} if it exists (options not given keep their value)",
    )


def _onboarding(sub: Any, languages: Sequence[str] = LANGUAGES) -> None:
    """The `offices` and `dossiers` parsers with their subcommands."""
    offices = _runs(
        sub.add_parser("offices", help="create, list and show offices"),
        _ONBOARDING,
        "cmd_onboarding",
    )
    osub = offices.add_subparsers(dest="onboarding_command", required=True)
    add = osub.add_parser("add", help="create an office (refused if it exists, unless --update)")
    add.add_argument("--id", required=True)
    add.add_argument("--name", help="display name (needed for a new office)")
    add.add_argument("--timezone", help="IANA time zone, e.g. Europe/Brussels (new office)")
    add.add_argument("--language", choices=languages, help="mails and page (new: nl)")
    add.add_argument("--contact", help="the office's contact e-mail address")
    _update(add, "office")
    _json(osub.add_parser("list", help="every office"))
    show = osub.add_parser("show", help="one office with its users")
    show.add_argument("--id", required=True)
    _json(show)

    dossiers = _runs(
        sub.add_parser("dossiers", help="dossier names, codes and managers"),
        _ONBOARDING,
        "cmd_onboarding",
    )
    dsub = dossiers.add_subparsers(dest="onboarding_command", required=True)
    dadd = dsub.add_parser("add", help="create a dossier (refused if it exists, unless --update)")
    dadd.add_argument("--office", required=True)
    dadd.add_argument("--id", required=True, help="the dossier id the platform submits with")
    dadd.add_argument("--name", help="display name (needed for a new dossier)")
    dadd.add_argument("--code", help="the dossier code in the accounting package (new dossier)")
    _update(dadd, "dossier")
    dlist = dsub.add_parser("list", help="the dossiers of an office")
    dlist.add_argument("--office", required=True)
    _json(dlist)
    dshow = dsub.add_parser("show", help="one dossier with its managers")
    dshow.add_argument("--office", required=True)
    dshow.add_argument("--id", required=True)
    _json(dshow)
    for verb, what in (("assign", "give"), ("unassign", "take")):
        parser = dsub.add_parser(verb, help=f"{what} a dossier manager a dossier")
        parser.add_argument("--office", required=True)
        parser.add_argument("--dossier", required=True)
        parser.add_argument("--user", required=True)


def build_parser() -> argparse.ArgumentParser:
    """The command line: every command and its arguments."""
    parser = argparse.ArgumentParser(
        prog="dossierflow",
        description="Ordered, failure-aware task delivery between an accounting-firm "
        "platform and accounting packages.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _processes(sub)
    _tools(sub)
    _ops(sub)
    _api(sub)
    _onboarding(sub)
    _reminder(sub)
    prune = _runs(
        sub.add_parser("prune", help="delete finished work older than the retention"),
        _PRUNE,
        "cmd_prune",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.add_argument("--days", type=int, help="default: DOSSIERFLOW_RETENTION_DAYS")
    _json(prune)
    return parser


def _processes(sub: Any) -> None:
    dispatcher = _runs(
        sub.add_parser("dispatcher", help="run the sequencer and sweeper (several may run)"),
        _PROCESSES,
        "cmd_dispatcher",
    )
    worker = _runs(
        sub.add_parser("worker", help="run a connector for one office"), _PROCESSES, "cmd_worker"
    )
    for process in (dispatcher, worker):
        process.add_argument(
            "--metrics-port",
            type=int,
            help="serve /metrics on this port (0: off; default: DOSSIERFLOW_METRICS_PORT)",
        )
    worker.add_argument("--office", required=True)
    worker.add_argument("--concurrency", type=int, default=0, help="parallel slots")
    worker.add_argument("--adapter", choices=["simulated", "noop"], default="simulated")


def _tools(sub: Any) -> None:
    demo = _runs(
        sub.add_parser("demo", help="the whole system on a demo workload"), _TOOLS, "cmd_demo"
    )
    demo.add_argument("--tasks", type=int, default=2000)
    demo.add_argument("--dossiers", type=int, default=100)
    bench = _runs(
        sub.add_parser("bench", help="throughput and latency with a no-op package"),
        _TOOLS,
        "cmd_bench",
    )
    bench.add_argument("--tasks", type=int, default=5000)
    bench.add_argument("--dossiers", type=int, default=500)
    bench.add_argument("--workers", type=int, default=4)
    bench.add_argument("--rate", type=float, default=0.0, help="tasks/s to submit; 0: at once")
    # The platform's nightly loads come in batches; --batch 1 submits one task per call.
    bench.add_argument("--batch", type=int, default=100, help="tasks per submit call")
    chaos = _runs(
        sub.add_parser("chaos", help="the system under injected faults, checked"),
        _TOOLS,
        "cmd_chaos",
    )
    chaos.add_argument("--tasks", type=int, default=1000)
    chaos.add_argument("--dossiers", type=int, default=50)
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument(
        "--faults",
        default="",
        help="comma-separated; default: all but mailer-kill (node-loss on a cluster only)",
    )
    chaos.add_argument("--duration", type=float, default=90.0, help="seconds of faults")


def _task_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--office")
    parser.add_argument("--dossier")
    parser.add_argument("--limit", type=int, default=200)
    _json(parser)


def _ops(sub: Any) -> None:
    tasks = sub.add_parser("tasks", help="list, show, restart, cancel or resolve tasks")
    tsub = tasks.add_subparsers(dest="tasks_command", required=True)
    listing = _runs(
        tsub.add_parser("list", help="tasks (default: failed and retry-waiting)"),
        _OPS,
        "tasks_list",
    )
    _task_filters(listing)
    listing.add_argument("--status", action="append", choices=TASK_STATUSES)
    listing.add_argument("--all", action="store_true", help="every status")
    listing.add_argument("--severity", choices=SEVERITIES)
    show = _runs(
        tsub.add_parser("show", help="one task with history and instructions"), _OPS, "tasks_show"
    )
    show.add_argument("task_id")
    show.add_argument("--json", action="store_true")
    show.add_argument("--lang", default="en", choices=LANGUAGES)
    for action in ("restart", "cancel", "resolve"):
        parser = _runs(tsub.add_parser(action, help=f"{action} a task"), _OPS, f"tasks_{action}")
        parser.add_argument("task_id")
        parser.add_argument("--role", default="support", choices=ROLES)
        parser.add_argument("--by", default="cli", help="who acts (recorded)")
        if action == "restart":
            parser.add_argument("--payload", help="corrected payload as JSON")
    instructions = sub.add_parser("instructions", help="list instructions")
    isub = instructions.add_subparsers(dest="instructions_command", required=True)
    ilist = _runs(
        isub.add_parser("list", help="instructions (default: open ones)"),
        _OPS,
        "instructions_list",
    )
    _task_filters(ilist)
    ilist.add_argument("--status", default="open", choices=["open", "resolved", "all"])
    ilist.add_argument("--severity", choices=SEVERITIES)
    ilist.add_argument("--lang", default="en", choices=LANGUAGES)


def _api(sub: Any) -> None:
    api = _runs(
        sub.add_parser("api", help="serve the HTTP API and the monitoring page"), _API, "cmd_api"
    )
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    users = sub.add_parser("users", help="manage users of the API and the page")
    usub = users.add_subparsers(dest="users_command", required=True)
    # `add` first checks that the user's office exists (dossierflow.commands.onboarding).
    add = _runs(
        usub.add_parser("add", help="create or replace a user"), _ONBOARDING, "cmd_users_add"
    )
    add.add_argument("--id", required=True)
    add.add_argument("--office", help="the user's office (not for support)")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--email", default="")
    add.add_argument(
        "--language",
        default="",
        choices=LANGUAGES,
        help="the user's language (default: the browser's, else the office's; mails: nl)",
    )
    add.add_argument("--dossier", action="append", help="a dossier of a dossier manager")
    token = _runs(
        usub.add_parser("token", help="print a new token for a user (shown once)"),
        _API,
        "users_token",
    )
    token.add_argument("--id", required=True)
    token.add_argument(
        "--days", type=float, help="how long it works (default: DOSSIERFLOW_TOKEN_DAYS)"
    )
    for name, why in (
        ("revoke", "end the user's tokens and page sessions at once"),
        ("disable", "revoke, and refuse new tokens until `users add` saves the user again"),
    ):
        _runs(usub.add_parser(name, help=why), _API, "users_revoke").add_argument(
            "--id", required=True
        )


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from exc


def _reminder(sub: Any) -> None:
    reminder = sub.add_parser("reminder", help="instruction mails and the reminder digest")
    actions = reminder.add_subparsers(dest="reminder_command", required=True)
    mail = _runs(
        actions.add_parser("mail", help="mail every new instruction (loops; --once: one pass)"),
        _REMINDER,
        "cmd_mail",
    )
    mail.add_argument("--once", action="store_true", help="one pass, then exit")
    mail.add_argument("--interval", type=float, default=30.0, help="seconds between passes")
    run = _runs(
        actions.add_parser("run", help="send the reminder digest due today (run it daily)"),
        _REMINDER,
        "cmd_run",
    )
    run.add_argument("--date", type=_day, default=None, help="run as if today were this day")
    run.add_argument("--dry-run", action="store_true", help="print who would get what")
    sink = _runs(
        actions.add_parser("sink", help="a local SMTP server storing mails as .eml files"),
        _REMINDER,
        "cmd_sink",
    )
    sink.add_argument("--host", default="127.0.0.1")
    sink.add_argument("--port", type=int, default=8025)
    sink.add_argument("--dir", type=Path, required=True, help="where to store the mails")
