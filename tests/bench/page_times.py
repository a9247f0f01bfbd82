"""How fast each monitoring page answers with 10,000 tasks in the office (prints figures).

    .venv/bin/python -m tests.bench.page_times [--tasks 10000] [--dossiers 1000] [--rounds 20]
        [--churn 50] [--no-feed] [--database NAME --keep]   # --database: reuse a seeded one

Seeds its own database on the local MongoDB-compatible server (DOSSIERFLOW_MONGO_URL),
serves the page with uvicorn on 127.0.0.1 as `dossierflow api` does (with the change feed
on the local RabbitMQ, DOSSIERFLOW_AMQP_URL), logs in as an office admin and times each
page over real HTTP: the office's first view (which reads the page's snapshot of the
office), then each page warm, one view every `--every` seconds, as people and the page's
live part ask. Meanwhile `--churn` tasks a second change, each with the change notice the
sequencer would publish, so the copy is kept current as in production.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pika

from broker import topology
from dispatcher.api.app import create_app
from dispatcher.api.changes import ChangeFeed
from dispatcher.api.guard import PLAIN_COOKIE
from dossierflow.settings import Settings
from dossierflow.tools.apidemo import Server
from store import InstructionRecord, OfficeRecord, Role, Store, UserRecord
from store.tokens import digest
from tests.integration.test_api_flow import free_port
from workers.vocabulary import InstructionStatus, TaskStatus

OFFICE = "office1"


def seed(store: Store, tasks: int, dossiers: int) -> tuple[str, str]:
    """Tasks over the dossiers: 97 % done, the rest waiting, one failed in 25 dossiers.

    Written in bulk as the store lays tasks out (inserting one by one through the
    sequencer's path would take minutes here, and only the pages are measured).
    """
    start = datetime.now(UTC) - timedelta(days=20)
    store.offices.save(OfficeRecord(OFFICE, "Bench office", "Europe/Brussels", "nl"))
    failing = {tasks - 1 - 2 * k for k in range(max(1, dossiers // 25))}
    docs, failed_id = [], ""
    for n in range(tasks):
        dossier, task_id = f"d{n % dossiers:05d}", uuid.uuid4().hex
        at = start + timedelta(seconds=n * 10)
        payload = {"dossier_code": f"C-{dossier}"}
        status = TaskStatus.DONE if n < tasks * 0.97 else TaskStatus.WAITING
        doc = {
            "_id": task_id, "office": OFFICE, "dossier": dossier, "kind": "dossier.sync",
            "payload": payload, "submitted_at": at, "attempts": 1, "status": status.value,
        }  # fmt: skip
        if n in failing:
            code, severity = (
                ("unknown_dossier_code", "orange") if n % 4 else ("database_error", "red")
            )
            doc.update(status=TaskStatus.FAILED.value, error={"code": code, "severity": severity})
            store.instructions.insert(
                InstructionRecord(
                    f"{task_id}/1", task_id, OFFICE, dossier, "dossier.sync", code, severity,
                    dict(payload), InstructionStatus.OPEN, at,
                )
            )  # fmt: skip
            failed_id = task_id
        docs.append(doc)
        if len(docs) == 1000:
            store.collection("tasks").insert_many(docs)
            docs = []
    if docs:
        store.collection("tasks").insert_many(docs)
    store.users.save(UserRecord("bench-admin", OFFICE, Role.ADMIN))
    return store.tokens.issue("bench-admin"), failed_id


def get(url: str, session: str, language: str = "nl") -> tuple[float, int]:
    """One GET with a page session's cookie: its time in ms and the page's size."""
    request = urllib.request.Request(
        url, headers={"Cookie": f"{PLAIN_COOKIE}={session}", "Accept-Language": language}
    )
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as answer:
        size = len(answer.read())
    return (time.perf_counter() - began) * 1000, size


def timed(url: str, token: str, rounds: int, every: float) -> tuple[float, float, int]:
    """Median and worst time (ms) of `rounds` GETs, and the page's size."""
    times, size = [], 0
    for _ in range(rounds):
        elapsed, size = get(url, token)
        times.append(elapsed)
        time.sleep(every)
    return statistics.median(times), max(times), size


def main() -> None:
    """Seed, serve, time each page, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--dossiers", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between views")
    parser.add_argument("--database", help="a database an earlier --keep run seeded")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--churn", type=float, default=50.0, help="task changes a second")
    parser.add_argument("--no-feed", action="store_true", help="no change feed: timed reads")
    args = parser.parse_args()
    settings = Settings.from_env()
    database = args.database or f"pagebench_{uuid.uuid4().hex[:8]}"
    store = Store.connect(settings.mongo_url, database)
    store.ensure_indexes()
    try:
        began = time.monotonic()
        if args.database:
            token, failed = store.tokens.issue("bench-admin"), _a_failed_task(store)
        else:
            token, failed = seed(store, args.tasks, args.dossiers)
            print(f"seeded {args.tasks} tasks over {args.dossiers} dossiers in "
                  f"{time.monotonic() - began:.0f} s into {database}")  # fmt: skip
        changes = None if args.no_feed else ChangeFeed(settings.amqp_url).start()
        app = create_app(
            replace(settings, mongo_db=database),
            store,
            client_factory=_no_broker,
            changes=changes,
        )
        port = free_port()
        server = Server(app, "127.0.0.1", port)
        server.start()
        base = f"http://127.0.0.1:{port}"
        token = app.state.sessions.open("bench-admin", digest(token))  # as a login does
        cold, _ = get(base + "/", token)
        print(f"first view of the office (reads its snapshot): {cold:.0f} ms")
        stop = threading.Event()
        churner = threading.Thread(
            target=churn, args=(store, settings.amqp_url, args.churn, stop), daemon=True
        )
        churner.start()
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
            median, worst, size = timed(base + path, token, args.rounds, args.every)
            print(f"{name:36} {median:10.1f} {worst:8.1f} {size:8d}")
        stop.set()
        churner.join()
        snapshots = app.state.page_snapshots
        print(
            f"copy kept current by {snapshots.change_reads} reads of what changed and "
            f"{snapshots.whole_reads} whole reads ({args.churn:.0f} task changes/s, "
            f"feed {'on' if changes is not None else 'off'})"
        )
        server.stop()
        if changes is not None:
            changes.close()
    finally:
        if not args.keep:
            store.drop()
        store.close()


def churn(store: Store, amqp_url: str, per_s: float, stop: threading.Event) -> None:
    """Change `per_s` waiting or done tasks a second, each with its change notice."""
    if per_s <= 0:
        return
    ids = [str(d["_id"]) for d in store.collection("tasks").find({"office": OFFICE}, {"_id": 1})]
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    ch.exchange_declare(topology.CHANGES_EXCHANGE, "fanout", durable=True)
    pick, tick = random.Random(7), 0.1
    while not stop.wait(tick):
        chosen = pick.sample(ids, max(1, round(per_s * tick)))
        store.collection("tasks").update_many(
            {"_id": {"$in": chosen}, "status": {"$in": ["done", "waiting"]}},
            {"$inc": {"attempts": 1}},
        )
        body = {"v": 1, "tasks": {OFFICE: chosen}, "dossiers": {}}
        ch.basic_publish(topology.CHANGES_EXCHANGE, "", json.dumps(body).encode())
    conn.close()


def _a_failed_task(store: Store) -> str:
    found = store.instructions.find(office=OFFICE, status=InstructionStatus.OPEN, limit=1)
    return found[0].task_id if found else "none"


def _no_broker() -> object:
    raise RuntimeError("the page benchmark only reads")


if __name__ == "__main__":
    main()
