"""`dossierflow bench`: throughput, submit-to-start latency and where the cost goes."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from broker import topology
from broker.admin import Admin
from broker.messages import utcnow
from dispatcher.client import Client
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.demo import FINISHED, cluster_settings
from dossierflow.tools.progress import Progress
from dossierflow.tools.stats import STATS_DIR_ENV, StatsFile, load_counts, per_task_line
from store import Store
from store.counting import CommandCounter

OFFICE = "bench"

# RabbitMQ refreshes its message stats every ~5 s: figures unchanged this long are final.
STATS_SETTLE_S = 6.0
STATS_WAIT_S = 30.0
READY_WAIT_S = 60.0


@dataclass(frozen=True)
class Run:
    """What one run measured."""

    submit_s: float
    elapsed_s: float
    finished: int
    refused: int
    latencies_ms: list[float]
    message_stats: dict[str, Any]
    peak_memory_mb: dict[str, float]


@dataclass(frozen=True)
class BenchOptions:
    """What one run submits and how: `rate` 0 submits as fast as it can."""

    tasks: int = 5000
    dossiers: int = 500
    workers: int = 4
    rate: float = 0.0
    batch: int = 100


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile (0..1) of `values`, nearest-rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index]


def due_offset(index: int, rate: float) -> float:
    """Seconds after the start when item `index` is due at `rate` per second (0: at once).

    A late submitter does not move the schedule: it catches up, so the load stays the
    offered one instead of easing off whenever the system slows down.
    """
    return index / rate if rate > 0 else 0.0


def batches(total: int, size: int) -> list[range]:
    """The item numbers of each submission, in order, at most `size` per batch."""
    return [range(start, min(total, start + size)) for start in range(0, total, max(1, size))]


def broker_line(message_stats: Mapping[str, Any], tasks: int) -> str:
    """Messages published into the virtual host and delivered from it, per task."""
    published = int(message_stats.get("publish", 0))
    delivered = int(message_stats.get("deliver_get", 0))
    return (
        f"{published / tasks:.2f} published, {delivered / tasks:.2f} delivered per task "
        f"({published} and {delivered} for {tasks} tasks)"
    )


def _item(i: int, dossiers: int) -> tuple[str, str, str, dict[str, Any]]:
    # Deletions are not coalesced (syncs would be): every submit is a task.
    payload = {"dossier_code": "c1", "proposal_id": f"p{i}"}
    return OFFICE, f"d{i % dossiers:05d}", "booking_proposal.delete", payload


def _submit_batch(client: Client, numbers: range, dossiers: int) -> list[str | None]:
    """Submit one batch; the task ids (None for an item refused)."""
    from dispatcher.client import Submission

    results = client.submit_many([Submission(*_item(i, dossiers)) for i in numbers])
    return [r.task_id for r in results]


def _submit_all(client: Client, opts: BenchOptions) -> list[str | None]:
    """Submit every task at the offered pace; their ids (None for one refused)."""
    bar = Progress("submitting", opts.tasks)
    started = time.monotonic()
    ids: list[str | None] = []
    for numbers in batches(opts.tasks, opts.batch):
        wait = started + due_offset(numbers.start, opts.rate) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if opts.batch == 1:
            ids.append(client.submit(*_item(numbers.start, opts.dossiers)))
        else:
            ids.extend(_submit_batch(client, numbers, opts.dossiers))
        bar.update(numbers.stop)
    bar.close()
    return ids


def _settled_message_stats(admin: Admin, vhost: str) -> dict[str, Any]:
    """The virtual host's message stats once they stop changing (or after STATS_WAIT_S)."""
    deadline = time.monotonic() + STATS_WAIT_S
    last: dict[str, Any] = {}
    since = time.monotonic()
    while time.monotonic() < deadline:
        stats = dict(admin.vhost(vhost).get("message_stats") or {})
        figures = {k: v for k, v in stats.items() if isinstance(v, int)}
        if figures != last:
            last, since = figures, time.monotonic()
        elif time.monotonic() - since >= STATS_SETTLE_S:
            break
        time.sleep(1.0)
    return last


def _wait_ready(admin: Admin, cluster: Cluster, settings: Settings, workers: int) -> float:
    """Wait until every partition queue has its owner and the work queue all connectors.

    What is measured is the system running, not its start: tasks submitted while the
    dispatcher still takes its partitions wait for it (at a paced load that start alone
    put the p99 at 1-1.5 s). Read from the broker's queue figures; the seconds waited.
    """
    began = time.monotonic()
    deadline = began + READY_WAIT_S
    wanted = {topology.partition_queue(n): 1 for n in range(settings.partitions)}
    wanted[topology.work_queue(OFFICE)] = workers
    while time.monotonic() < deadline:
        figures = {q["name"]: int(q.get("consumers") or 0) for q in admin.queues(cluster.vhost)}
        if all(figures.get(q, 0) >= n for q, n in wanted.items()):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"the dispatcher and connectors did not start in {READY_WAIT_S:.0f} s")
    return time.monotonic() - began


def _wait_all_finished(store: Store, ids: list[str | None], dossiers: int) -> dict[str, int]:
    """Wait until every task submitted has finished, then count once.

    Reading by status scans every task on the test server (polled, that alone took half
    of its time during a run). A dossier's tasks finish in order, so only the last task
    of each dossier is watched, by id, a hundred at a time: a poll stops at the first
    hundred that still holds an unfinished one.
    """
    tails: dict[int, str] = {}
    for number, task_id in enumerate(ids):  # item `number` went to dossier number % dossiers
        if task_id is not None:
            tails[number % dossiers] = task_id
    watch = list(tails.values())
    deadline = time.monotonic() + 1800
    while watch and time.monotonic() < deadline:
        left = store.tasks.unfinished(watch[:100])
        watch = left + watch[100:]
        if left:
            time.sleep(1.0)
    return store.tasks.count()


def run_bench(settings: Settings, opts: BenchOptions) -> int:
    """Run one measurement and print its figures; the last line is the summary."""
    if opts.tasks < 1 or opts.dossiers < 1 or opts.workers < 1 or opts.batch < 1:
        print("dossierflow bench: --tasks, --dossiers, --workers and --batch must be at least 1")
        return 2
    if opts.rate < 0:
        print("dossierflow bench: --rate must not be negative")
        return 2
    state = Path(".dossierflow/bench")
    stats_dir = (state / "stats").resolve()
    shutil.rmtree(stats_dir, ignore_errors=True)
    # Named after the database: a second bench (DOSSIERFLOW_MONGO_DB=other) leaves this one be.
    vhost = settings.mongo_db + "-bench"
    settings = replace(settings, mongo_db=settings.mongo_db + "_bench", log_level="warning")
    cluster = Cluster(
        settings,
        vhost,
        settings.mongo_db,
        state / "logs",
        extra_env={STATS_DIR_ENV: str(stats_dir)},
    )
    cluster.reset()
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    store.drop()
    store.ensure_indexes()
    cluster.start_dispatcher()
    for n in range(opts.workers):
        cluster.start_worker(OFFICE, f"worker-{n}", adapter="noop")
    # The client's own store counts its commands; `store` (setup, polling) is not counted.
    counter = CommandCounter()
    client_store = Store.connect(settings.mongo_url, settings.mongo_db, listeners=[counter])
    client_stats = StatsFile(counter, stats_dir, "client")
    try:
        _wait_ready(Admin(settings.rabbitmq_api), cluster, settings, opts.workers)
        client = Client.connect(cluster_settings(settings, cluster), client_store)
        started, started_at = time.monotonic(), utcnow()
        ids = _submit_all(client, opts)
        refused = sum(1 for i in ids if i is None)
        submit_s = time.monotonic() - started
        client.close()
        # Counting on the test server scans every task: poll rarely, so the measurement
        # does not load the server it measures; the finish time comes from the tasks.
        counts = _wait_all_finished(store, ids, opts.dossiers)
        elapsed = time.monotonic() - started
        memory = cluster.peak_memory_mb()
    finally:
        cluster.stop()
        client_stats.close()
        client_store.close()
    records = store.tasks.find(office=OFFICE)
    last = max((t.finished_at for t in records if t.finished_at is not None), default=None)
    if last is not None:
        elapsed = min(elapsed, (last - started_at).total_seconds())
    run = Run(
        submit_s=submit_s,
        elapsed_s=elapsed,
        finished=sum(counts.get(s.value, 0) for s in FINISHED),
        refused=refused,
        latencies_ms=[
            (t.started_at - t.submitted_at).total_seconds() * 1000
            for t in records
            if t.started_at is not None
        ],
        message_stats=_settled_message_stats(Admin(settings.rabbitmq_api), cluster.vhost),
        peak_memory_mb=memory,
    )
    _report(opts, run, stats_dir)
    store.drop()
    return 0 if run.finished == opts.tasks else 1


def _report(opts: BenchOptions, run: Run, stats_dir: Path) -> None:
    tasks = opts.tasks
    client_counts = load_counts(stats_dir, "client")
    dispatcher_counts = load_counts(stats_dir, "dispatcher")
    pace = f"paced at {opts.rate:g}/s" if opts.rate > 0 else "as fast as it can"
    print(
        f"  {tasks} tasks over {opts.dossiers} dossiers, {opts.workers} connectors (no-op package)"
    )
    print(
        f"  submitted in {run.submit_s:.1f} s ({tasks / run.submit_s:.0f}/s, "
        f"batches of {opts.batch}, {pace}), all finished in {run.elapsed_s:.1f} s, "
        f"finished {run.finished}, refused {run.refused}"
    )
    latencies = run.latencies_ms
    if latencies:
        print(
            f"  submit-to-start ms: mean {statistics.fmean(latencies):.1f}, "
            f"max {max(latencies):.1f}"
        )
    total = client_counts.total + dispatcher_counts.total
    print(f"  store commands per task: {total / tasks:.2f} (client plus dispatcher)")
    print(f"    client:     {per_task_line(client_counts, tasks)}")
    print(f"    dispatcher: {per_task_line(dispatcher_counts, tasks)}")
    print(f"  broker messages: {broker_line(run.message_stats, tasks)}")
    if run.peak_memory_mb:
        peaks = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(run.peak_memory_mb.items()))
        print(f"  peak resident memory, MB: {peaks}")
    print(
        f"dossierflow bench: {run.finished / run.elapsed_s:.0f} tasks/s, "
        f"p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms"
    )
