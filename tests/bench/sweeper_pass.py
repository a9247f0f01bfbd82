"""What one sweeper pass costs with a long history in the store (prints figures).

    .venv/bin/python -m tests.bench.sweeper_pass [--finished 5000] [--open 50] [--rounds 10]

Seeds its own database on the local MongoDB-compatible server (DOSSIERFLOW_MONGO_URL)
and its own virtual host on RabbitMQ: `--finished` done tasks (each with its history and
payload, as the sequencer leaves them) over 500 dossiers, `--open` waiting tasks, and
times `Dispatcher.sweep()` (the backlog check on the broker and the store reads that
find outstanding work). Then it times one retention pass that prunes every finished
task (they are seeded 100 days old). Everything is dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from dataclasses import replace
from datetime import timedelta

from broker.admin import Admin, with_vhost
from broker.messages import utcnow
from broker.rabbitmq import Connection
from dispatcher.service import Dispatcher
from dossierflow.settings import Settings
from store import Store
from store.counting import CommandCounter

DOSSIERS = 500


def seed(store: Store, finished: int, waiting: int) -> None:
    """Done tasks 100 days old with their history, and some waiting ones, in bulk."""
    old = utcnow() - timedelta(days=100)
    docs, seqs = [], dict.fromkeys(range(DOSSIERS), 0)
    heads: dict[int, int] = {}  # the first open task of each dossier
    for n in range(finished + waiting):
        d = n % DOSSIERS
        at = old + timedelta(seconds=n)
        done = n < finished
        doc = {
            "_id": uuid.uuid4().hex, "office": "o1", "dossier": f"d{d:04}",
            "kind": "dossier.sync", "payload": {"dossier_code": f"C-{d:04}"},
            "status": "done" if done else "waiting", "submitted_at": at, "seq": seqs[d],
            "accepted_at": at, "attempts": 1, "epoch": 1, "batch": 1,
            "finished_at": at if done else None,
            "history": [
                {"id": f"{n}/w", "at": at, "status": "waiting", "note": ""},
                {"id": f"{n}/q", "at": at, "status": "queued", "note": ""},
                {"id": f"{n}/r", "at": at, "status": "running", "note": "attempt 1"},
            ] + ([{"id": f"{n}/d", "at": at, "status": "done", "note": ""}] if done else []),
        }  # fmt: skip
        if not done:
            heads.setdefault(d, seqs[d])
        seqs[d] += 1
        docs.append(doc)
    for start in range(0, len(docs), 1000):
        store.collection("tasks").insert_many(docs[start : start + 1000])
    store.collection("dossiers").insert_many(
        [_dossier(d, seqs[d], heads.get(d, seqs[d])) for d in seqs]
    )


def _dossier(d: int, next_seq: int, head: int) -> dict[str, object]:
    """A dossier document as the sequencer writes it."""
    return {
        "_id": f"o1.d{d:04}", "office": "o1", "dossier": f"d{d:04}", "next_seq": next_seq,
        "head": head, "active": None, "blocked": False, "open": next_seq - head,
        "epoch": 1, "batch": 1,
    }  # fmt: skip


def time_sweeps(settings: Settings, store: Store, rounds: int) -> list[float]:
    """Milliseconds of each of `rounds` sweeper passes, after one to warm up."""
    conn = Connection.open(settings.amqp_url, name="sweeper-bench")
    try:
        channel = conn.channel(confirm=True)
        channel.declare_control(settings.topology())
        dispatcher = Dispatcher(settings, store, threading.Event())
        dispatcher._publish_ch = channel  # what run() sets up before sweeping
        dispatcher.sweep()
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            dispatcher.sweep()
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        conn.close()


def main() -> int:
    """Seed, time the sweeper's passes and one retention pass, print, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--finished", type=int, default=5000)
    parser.add_argument("--open", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    name = f"sweepbench{uuid.uuid4().hex[:8]}"
    base = Settings.from_env()
    settings = replace(base, amqp_url=with_vhost(base.amqp_url, name), mongo_db=name)
    admin = Admin(base.rabbitmq_api)
    admin.create_vhost(name)
    counter = CommandCounter()
    store = Store.connect(settings.mongo_url, name, listeners=[counter])
    try:
        store.ensure_indexes()
        seed(store, args.finished, args.open)
        before = counter.commands()
        times = time_sweeps(settings, store, args.rounds)
        after = counter.commands()
        per_pass = {k: (after.get(k, 0) - before.get(k, 0)) / (args.rounds + 1) for k in after}
        print(
            f"sweeper pass, {args.finished} finished + {args.open} open tasks: "
            f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms "
            f"over {args.rounds} passes; store commands per pass: "
            + ", ".join(f"{k} {v:g}" for k, v in sorted(per_pass.items()) if v)
        )
        retention = store.retention()
        retention.ensure_indexes()
        started = time.perf_counter()
        report = retention.prune(utcnow() - timedelta(days=90), lambda: True)
        seconds = time.perf_counter() - started
        print(
            f"retention pass: {report.tasks} tasks pruned in {seconds:.2f} s "
            f"({len(report.batches)} deletes of at most {max(report.batches, default=0)} ids, "
            f"no pauses); complete={report.complete}"
        )
        times = time_sweeps(settings, store, args.rounds)
        print(f"sweeper pass after pruning: median {statistics.median(times):.1f} ms")
    finally:
        store.drop()
        store.close()
        admin.delete_vhost(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
