"""`dossierflow demo`: the whole system on local services with a checked workload."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from dispatcher.client import Client
from dispatcher.cluster import Cluster
from dispatcher.progress import Progress
from dispatcher.settings import Settings
from dispatcher.workload import JOURNALS, PERIODS, VAT_CODES, company_code, demo_tasks, dossiers
from store import Store, TaskStatus
from workers.accounting.simulated import SimulatedPackage

OFFICES = ["office1", "office2"]
CONNECTORS_PER_OFFICE = 3
TERMINAL = (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED)


def run_demo(settings: Settings, tasks: int = 2000, dossiers_count: int = 100) -> int:
    """Run the demo; exit status 0 only if nothing was lost or out of order."""
    state = Path(".dossierflow/demo")
    settings = replace(
        settings,
        mongo_db=settings.mongo_db + "_demo",
        simpackage_path=(state / "simulated-package.sqlite3").resolve(),
        simpackage_latency_ms="5,25",
        sweep_grace_s=20.0,
    )
    cluster = Cluster(settings, "dossierflow-demo", settings.mongo_db, state / "logs")
    cluster.reset()
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    store.drop()
    store.ensure_indexes()
    state.mkdir(parents=True, exist_ok=True)
    package = SimulatedPackage(settings.simpackage_path)
    package.reset()
    for office, dossier in dossiers(OFFICES, dossiers_count):
        package.create_company(company_code(office, dossier), PERIODS, JOURNALS, VAT_CODES)

    print(
        f"dossierflow demo: {len(OFFICES)} offices, {dossiers_count} dossiers, "
        f"{CONNECTORS_PER_OFFICE} connectors per office, {tasks} tasks"
    )
    print(
        f"  logs in {cluster.log_dir}/, RabbitMQ console http://127.0.0.1:15672 "
        f"(guest/guest, vhost {cluster.vhost})"
    )
    cluster.start_dispatcher("dispatcher-1")
    cluster.start_dispatcher("dispatcher-2")
    for office in OFFICES:
        for n in range(1, CONNECTORS_PER_OFFICE + 1):
            cluster.start_worker(office, f"worker-{office}-{n}")
    start = time.monotonic()
    try:
        plan = demo_tasks(OFFICES, dossiers_count, tasks)
        expected: dict[tuple[str, str], list[str]] = defaultdict(list)
        expect_ok: set[str] = set()
        client = Client.connect(cluster_settings(settings, cluster), store)
        bar = Progress("submitting", len(plan))
        for i, item in enumerate(plan, 1):
            task_id = client.submit(item.office, item.dossier, item.kind, item.payload)
            expected[(item.office, item.dossier)].append(task_id)
            if item.expect_ok:
                expect_ok.add(task_id)
            if i % 50 == 0 or i == len(plan):
                bar.update(i)
        bar.close()
        client.close()
        counts = wait_until_finished(store, len(plan), deadline_s=600)
    finally:
        codes = cluster.stop()
    elapsed = time.monotonic() - start
    report = package.check_order(expected, expect_ok)
    unfinished = len(plan) - sum(counts.get(s.value, 0) for s in TERMINAL)
    lost = len(report.lost) + unfinished
    done, failed = counts.get("done", 0), counts.get("failed", 0)
    print(f"  executions across dossiers overlapping in time: {report.overlaps_across_dossiers}")
    print(f"  executions inside one dossier overlapping: {report.overlaps_within_dossier}")
    print(
        f"  bookings in the simulated package: {len(package.bookings(include_deleted=True))}, "
        f"double-booked keys: {report.double_booked}"
    )
    print(f"  process exit codes: {sorted(set(codes.values()))}")
    print(
        f"dossierflow demo: {done} done, {failed} failed, {lost} lost, "
        f"{report.out_of_order} out of order in {elapsed:.1f} s"
    )
    return 0 if lost == 0 and report.out_of_order == 0 else 1


def cluster_settings(settings: Settings, cluster: Cluster) -> Settings:
    """Settings of a client inside the cluster's virtual host and database."""
    return replace(settings, amqp_url=cluster.amqp_url, mongo_db=cluster.database)


def wait_until_finished(store: Store, total: int, deadline_s: float) -> dict[str, int]:
    """Poll task counts with a progress bar until every task is finished or time is up."""
    bar = Progress("running", total)
    deadline = time.monotonic() + deadline_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = store.count_tasks()
        finished = sum(counts.get(s.value, 0) for s in TERMINAL)
        bar.update(finished, f"failed {counts.get('failed', 0)}")
        if finished >= total:
            break
        time.sleep(0.5)
    bar.close()
    return counts
