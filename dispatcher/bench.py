"""`dossierflow bench`: throughput and submit-to-start latency with a no-op package."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

from dispatcher.client import Client
from dispatcher.cluster import Cluster
from dispatcher.demo import FINISHED, cluster_settings, wait_finished
from dispatcher.progress import Progress
from dispatcher.settings import Settings
from store import Store

OFFICE = "bench"


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile (0..1) of `values`, nearest-rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index]


def run_bench(settings: Settings, tasks: int, dossiers: int, workers: int) -> int:
    """Run one measurement and print its figures; the last line is the summary."""
    if tasks < 1 or dossiers < 1 or workers < 1:
        print("dossierflow bench: --tasks, --dossiers and --workers must be at least 1")
        return 2
    state = Path(".dossierflow/bench")
    settings = replace(settings, mongo_db=settings.mongo_db + "_bench", log_level="warning")
    cluster = Cluster(settings, "dossierflow-bench", settings.mongo_db, state / "logs")
    cluster.reset()
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    store.drop()
    store.ensure_indexes()
    cluster.start_dispatcher()
    for n in range(workers):
        cluster.start_worker(OFFICE, f"worker-{n}", adapter="noop")
    try:
        client = Client.connect(cluster_settings(settings, cluster), store)
        bar = Progress("submitting", tasks)
        started = time.monotonic()
        for i in range(tasks):
            # Deletions are not coalesced (syncs would be): every submit is a task.
            client.submit(
                OFFICE,
                f"d{i % dossiers:05d}",
                "booking_proposal.delete",
                {"dossier_code": "c1", "proposal_id": f"p{i}"},
            )
            if i % 100 == 99:
                bar.update(i + 1)
        bar.close()
        submit_s = time.monotonic() - started
        client.close()
        counts = wait_finished(store, tasks, "running")
        elapsed = time.monotonic() - started
    finally:
        cluster.stop()
    records = store.find_tasks(office=OFFICE)
    latencies = [
        (t.started_at - t.submitted_at).total_seconds() * 1000
        for t in records
        if t.started_at is not None
    ]
    finished = sum(counts.get(s.value, 0) for s in FINISHED)
    print(f"  {tasks} tasks over {dossiers} dossiers, {workers} connectors (no-op package)")
    print(
        f"  submitted in {submit_s:.1f} s ({tasks / submit_s:.0f}/s), "
        f"all finished in {elapsed:.1f} s, finished {finished}"
    )
    if latencies:
        print(
            f"  submit-to-start ms: mean {statistics.fmean(latencies):.1f}, "
            f"max {max(latencies):.1f}"
        )
    print(
        f"dossierflow bench: {finished / elapsed:.0f} tasks/s, "
        f"p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms"
    )
    store.drop()
    return 0 if finished == tasks else 1
