"""How fast each monitoring page answers with 10,000 tasks in the office (prints figures).

    .venv/bin/python -m tests.bench.page_times [--tasks 10000] [--dossiers 1000] [--rounds 20]

Seeds its own database on the local MongoDB-compatible server (DOSSIERFLOW_MONGO_URL),
serves the page with uvicorn on 127.0.0.1 as `dossierflow api` does, logs in as an
office admin and times each page over real HTTP; the database is dropped afterwards.
No broker is needed: the pages only read.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from dispatcher.api.app import create_app
from dispatcher.api.demo import Server
from dispatcher.settings import Settings
from store import (
    InstructionRecord,
    InstructionStatus,
    OfficeRecord,
    Role,
    Store,
    TaskRecord,
    TaskStatus,
    UserRecord,
)
from store.tokens import Tokens
from tests.integration.test_api_flow import free_port

OFFICE = "office1"


def seed(store: Store, tasks: int, dossiers: int) -> tuple[str, str]:
    """Tasks over the dossiers: mostly done, some waiting, one failed in fifty dossiers."""
    start = datetime.now(UTC) - timedelta(days=20)
    store.save_office(OfficeRecord(OFFICE, "Bench office", "Europe/Brussels", "nl"))
    failed_id = ""
    for n in range(tasks):
        dossier = f"d{n % dossiers:05d}"
        task_id = uuid.uuid4().hex
        at = start + timedelta(seconds=n * 10)
        payload = {"dossier_code": f"C-{dossier}"}
        store.insert_task(
            TaskRecord(task_id, OFFICE, dossier, "dossier.sync", payload, TaskStatus.SUBMITTED, at)
        )
        if n >= tasks - dossiers // 50 * 2 and n % 2 == 0:
            code, severity = (
                ("unknown_dossier_code", "orange") if n % 4 else ("database_error", "red")
            )
            error = {"code": code, "severity": severity, "facts": payload}
            store.update_task(task_id, TaskStatus.FAILED, at, {"error": error})
            store.insert_instruction(
                InstructionRecord(
                    f"{task_id}/1", task_id, OFFICE, dossier, "dossier.sync", code, severity,
                    dict(payload), InstructionStatus.OPEN, at,
                )
            )  # fmt: skip
            failed_id = task_id
        elif n < tasks * 0.97:
            store.update_task(task_id, TaskStatus.DONE, at)
        else:
            store.update_task(task_id, TaskStatus.WAITING, at)
    store.save_user(UserRecord("bench-admin", OFFICE, Role.ADMIN))
    return Tokens(store).issue("bench-admin"), failed_id


def timed(url: str, token: str, rounds: int, language: str) -> tuple[float, float, int]:
    """Median and worst time (ms) of `rounds` GETs, and the page's size."""
    times, size = [], 0
    for _ in range(rounds + 1):
        request = urllib.request.Request(
            url, headers={"Cookie": f"dossierflow_token={token}", "Accept-Language": language}
        )
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as answer:
            size = len(answer.read())
        times.append((time.perf_counter() - began) * 1000)
    times = times[1:]  # the first request warms caches and the connection pool
    return statistics.median(times), max(times), size


def main() -> None:
    """Seed, serve, time each page, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--dossiers", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    settings = Settings.from_env()
    database = f"pagebench_{uuid.uuid4().hex[:8]}"
    store = Store.connect(settings.mongo_url, database)
    store.ensure_indexes()
    try:
        began = time.monotonic()
        token, failed = seed(store, args.tasks, args.dossiers)
        print(f"seeded {args.tasks} tasks over {args.dossiers} dossiers in "
              f"{time.monotonic() - began:.0f} s")  # fmt: skip
        app = create_app(replace(settings, mongo_db=database), store, client_factory=_no_broker)
        port = free_port()
        server = Server(app, "127.0.0.1", port)
        server.start()
        base = f"http://127.0.0.1:{port}"
        pages = {
            "overview /": "/",
            "overview page 5": "/?page=5",
            "monitoring (default filter)": "/tasks",
            "monitoring, all tasks": "/tasks?status=all",
            "monitoring, done, dossier d00007": "/tasks?status=done&dossier=d00007",
            "monitoring dossier d00007": "/dossiers/d00007",
            "task (failed)": f"/tasks/{failed}",
            "live part of /tasks": "/tasks?fragment=1",
        }
        print(f"{'page':36} {'median ms':>10} {'max ms':>8} {'bytes':>8}")
        for name, path in pages.items():
            median, worst, size = timed(base + path, token, args.rounds, "nl")
            print(f"{name:36} {median:10.1f} {worst:8.1f} {size:8d}")
        server.stop()
    finally:
        store.drop()
        store.close()


def _no_broker() -> object:
    raise RuntimeError("the page benchmark only reads")


if __name__ == "__main__":
    main()
