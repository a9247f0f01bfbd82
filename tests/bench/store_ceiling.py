"""How many tasks a second the store alone allows: the ceiling under `dossierflow bench`.

    .venv/bin/python -m tests.bench.store_ceiling [--tasks 5000] [--batch 256]

A task's store work on its way through, with the real code: the client's insert (in
`insert_many` batches of 100, `Tasks.insert_many`) and the sequencer's three task updates
(accepted, released, finished, each with its history row; `Sequencing.write` in batches of
`--batch` tasks, as one owner batch writes them). Nothing else runs: no broker, no
dispatcher, no connector. It times each step on its own database, samples the server's
CPU (the FerretDB process of deploy/local/services.sh, from /proc) and prints the
statements per second and the tasks per second the store allows when it has a core to
itself. What `dossierflow bench` measures cannot exceed that; on a machine where the
store shares its cores with the broker and the processes, it is lower. (FerretDB's SQLite
backend writes one transaction at a time, so owners writing in parallel do not raise it.)
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from broker.messages import utcnow
from dossierflow.settings import Settings
from store import Store
from store.sequencing import BatchWrite, HistoryRow
from workers.vocabulary import TaskStatus

TICKS = os.sysconf("SC_CLK_TCK")


def _server_pid() -> int | None:
    state = Path(os.environ.get("DOSSIERFLOW_STATE_DIR", Path.home() / ".local/state/dossierflow"))
    try:
        return int((state / "ferretdb" / "ferretdb.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


@dataclass
class Step:
    """One timed step: statements written, seconds, server CPU seconds."""

    name: str
    statements: int
    seconds: float
    cpu: float

    def line(self) -> str:
        rate = self.statements / self.seconds
        busy = f", server {100 * self.cpu / self.seconds:.0f} % of a core" if self.cpu else ""
        per = self.cpu / self.statements * 1000 if self.cpu else self.seconds / self.statements
        return (
            f"  {self.name:<28} {self.statements:>6} statements in {self.seconds:6.2f} s:"
            f" {rate:7.0f}/s ({per:.2f} ms of server CPU each{busy})"
        )


def _timed(name: str, statements: int, pid: int | None, work: object) -> Step:
    cpu, started = _cpu_seconds(pid), time.perf_counter()
    work()  # type: ignore[operator]
    return Step(name, statements, time.perf_counter() - started, _cpu_seconds(pid) - cpu)


def _task_doc(n: int, dossiers: int) -> dict[str, object]:
    """A task as the client stores it (a booking proposal's size of payload)."""
    d = n % dossiers
    line = {"account": "700000", "amount": "121.00", "vat_code": "21"}
    payload = {
        "company": f"C-{d:04}", "proposal_id": f"p-{n:06}", "journal": "VK",
        "period": "2026-11", "lines": [line] * 3,
    }  # fmt: skip
    return {
        "_id": f"{n:032x}", "office": "o1", "dossier": f"d{d:04}",
        "kind": "booking_proposal.process", "payload": payload,
        "status": TaskStatus.SUBMITTED.value, "submitted_at": utcnow(), "history": [],
    }  # fmt: skip


def _updates(ids: list[str], status: TaskStatus, fields: dict[str, object]) -> BatchWrite:
    at = utcnow()
    rows = {i: [HistoryRow(f"{i}/{status.value}", at, status, "")] for i in ids}
    return BatchWrite(tasks=[(i, 1, {"status": status.value, **fields}, rows[i]) for i in ids])


def main() -> int:
    """Seed, time the insert and the three updates, print the ceiling, drop the database."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--dossiers", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256, help="tasks per owner batch")
    args = parser.parse_args()
    settings = Settings.from_env()
    name = f"ceiling{uuid.uuid4().hex[:8]}"
    store = Store.connect(settings.mongo_url, name)
    pid = _server_pid()
    try:
        store.ensure_indexes()
        docs = [_task_doc(n, args.dossiers) for n in range(args.tasks)]
        ids = [str(d["_id"]) for d in docs]
        tasks = store.collection("tasks")

        def insert() -> None:
            for start in range(0, len(docs), 100):
                tasks.insert_many(docs[start : start + 100], ordered=False)

        def update(status: TaskStatus, fields: dict[str, object]) -> object:
            def run() -> None:
                for start in range(0, len(ids), args.batch):
                    store.sequencing.write(
                        _updates(ids[start : start + args.batch], status, fields)
                    )

            return run

        now = utcnow()
        steps = [
            _timed("client insert", len(docs), pid, insert),
            _timed("accepted (waiting, seq)", len(ids), pid,
                   update(TaskStatus.WAITING, {"seq": 0, "accepted_at": now})),
            _timed("released (queued, run)", len(ids), pid,
                   update(TaskStatus.QUEUED, {"run": 1, "queued_at": now, "attempts": 0})),
            _timed("finished (done, result)", len(ids), pid,
                   update(TaskStatus.DONE, {"finished_at": now, "attempts": 1,
                                            "result": {"booking": "b-1"}})),
        ]  # fmt: skip
        server = "FerretDB" if pid else "the store (its CPU not sampled)"
        print(f"{server}, {args.tasks} tasks, {args.dossiers} dossiers, batches of {args.batch}:")
        for step in steps:
            print(step.line())
        wall = sum(s.seconds / s.statements for s in steps)
        print(
            f"a task's store work (1 insert + 3 updates): {wall * 1000:.2f} ms;"
            f" ceiling with the store to itself: {1 / wall:.0f} tasks/s"
        )
        if all(s.cpu for s in steps):
            cpu = sum(s.cpu / s.statements for s in steps)
            print(f"  ({cpu * 1000:.2f} ms of server CPU: {1 / cpu:.0f} tasks/s per core)")
    finally:
        store.drop()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
