"""`dossierflow tasks ...` and `dossierflow instructions ...`: the ops command line."""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from dispatcher.client import Client
from dispatcher.errors import ActionRefused, DispatcherError
from dossierflow.settings import Settings
from store import Role, Store
from workers.errors import InvalidSubmission
from workers.texts import instruction_text
from workers.vocabulary import ActionStatus, InstructionStatus, TaskStatus, severity_of

Command = Callable[[Settings, argparse.Namespace], int]

# Control, format (bidi overrides), line-separator and private characters: stored values
# come from connectors and the API, and printed raw they could move the cursor, recolour
# or rewrite what the operator reads.
_UNPRINTED = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})


def clean(value: object) -> str:
    """The text of a value with its control characters stripped, safe to print."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c for c in text if unicodedata.category(c) not in _UNPRINTED)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain text table with columns as wide as their content."""
    cells = [list(header), *[[clean(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _with_store(run: Callable[[Store, argparse.Namespace], int]) -> Command:
    """A command on the configured database, closed when the command ends."""

    def command(settings: Settings, args: argparse.Namespace) -> int:
        store = Store.connect(settings.mongo_url, settings.mongo_db)
        try:
            return run(store, args)
        finally:
            store.close()

    command.__doc__ = run.__doc__
    return command


@_with_store
def tasks_list(store: Store, args: argparse.Namespace) -> int:
    """List tasks; the default shows failed and retry-waiting ones (what needs a person)."""
    statuses = (
        [TaskStatus(s) for s in args.status]
        if args.status
        else None
        if args.all
        else [TaskStatus.FAILED, TaskStatus.RETRY_WAIT]
    )
    tasks = store.tasks.find(
        office=args.office, dossier=args.dossier, statuses=statuses, limit=args.limit
    )
    if args.severity:
        tasks = [t for t in tasks if t.severity == severity_of(args.severity)]
    if args.json:
        print(json.dumps([_jsonable(asdict(t)) for t in tasks], indent=2))
        return 0
    rows = [
        (
            t.id,
            t.office,
            t.dossier,
            t.kind,
            t.status.value,
            str((t.error or {}).get("code", "")),
            _when(t.submitted_at),
        )
        for t in tasks
    ]
    print(table(rows, ("task", "office", "dossier", "kind", "status", "error", "submitted")))
    print(f"{len(rows)} task(s)")
    return 0


@_with_store
def tasks_show(store: Store, args: argparse.Namespace) -> int:
    """One task with its history and instructions."""
    task = store.tasks.get(args.task_id)
    if task is None:
        print(f"dossierflow: no task {clean(args.task_id)}", file=sys.stderr)
        return 1
    history = store.tasks.history(task.id)
    instructions = store.instructions.find(task_id=task.id)
    if args.json:
        document = {
            **asdict(task),
            "history": [asdict(h) for h in history],
            "instructions": [asdict(i) for i in instructions],
        }
        print(json.dumps(_jsonable(document), indent=2))
        return 0
    for name in ("id", "office", "dossier", "kind", "status", "seq", "attempts", "worker"):
        print(f"{name:>10}: {clean(getattr(task, name))}")
    if task.status is TaskStatus.RETRY_WAIT:
        print(f"{'next try':>10}: {_when(task.next_attempt_at)} (delayed retry {task.retries})")
    print(f"{'payload':>10}: {json.dumps(task.payload)}")
    if task.error:
        print(
            f"{'error':>10}: {clean(task.error.get('code'))} ({clean(task.error.get('severity'))})"
        )
    print("history:")
    for h in history:
        print(f"  {_when(h.at)}  {h.status.value:<10} {clean(h.note)}")
    for i in instructions:
        text = instruction_text(i.code, i.facts, args.lang)
        stripe = f"{clean(i.severity)}, {i.status.value}"
        print(f"instruction {clean(i.id)} [{stripe}]: {clean(text.title)}")
        print(f"  {clean(text.action)}")
    return 0


def _act(action: str) -> Command:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        store = Store.connect(settings.mongo_url, settings.mongo_db)
        client = Client.connect(settings, store)
        try:
            method = getattr(client, action)
            kwargs: dict[str, Any] = {"role": Role(args.role), "by": args.by}
            if action == "restart" and args.payload is not None:
                kwargs["payload"] = json.loads(args.payload)
            record = method(args.task_id, **kwargs)
        except (ActionRefused, DispatcherError, InvalidSubmission, json.JSONDecodeError) as exc:
            print(f"dossierflow: {action} refused: {clean(exc)}", file=sys.stderr)
            return 1
        finally:
            client.close()
            store.close()
        print(f"{action} of task {clean(args.task_id)}: {record.status.value}")
        return 0 if record.status is ActionStatus.APPLIED else 3

    return run


@_with_store
def instructions_list(store: Store, args: argparse.Namespace) -> int:
    """List instructions with their text in the chosen language."""
    status = None if args.status == "all" else InstructionStatus(args.status)
    found = store.instructions.find(
        office=args.office,
        dossier=args.dossier,
        status=status,
        severity=severity_of(args.severity),
        limit=args.limit,
    )
    texts = [instruction_text(i.code, i.facts, args.lang) for i in found]
    if args.json:
        print(
            json.dumps(
                [
                    _jsonable({**asdict(i), "title": t.title, "action": t.action})
                    for i, t in zip(found, texts, strict=True)
                ],
                indent=2,
            )
        )
        return 0
    rows = [
        (i.severity, i.office, i.dossier, i.task_id or "-", i.code, _when(i.created_at), t.action)
        for i, t in zip(found, texts, strict=True)
    ]
    print(table(rows, ("stripe", "office", "dossier", "task", "code", "created", "what to do")))
    print(f"{len(rows)} instruction(s)")
    return 0


tasks_restart = _act("restart")
tasks_cancel = _act("cancel")
tasks_resolve = _act("resolve")
