"""`dossierflow demo`: the whole system on local services with a checked workload.

Phase 1 runs a workload in which one task per failure class fails: its dossier blocks
and an instruction says what to do. Phase 2 does what each instruction says (through
the same client as the ops CLI) and everything drains, in order. The outcome is checked
against the simulated package itself.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

from broker import topology
from broker.rabbitmq import Connection
from dispatcher.client import Client, Submission
from dossierflow.settings import Settings
from dossierflow.tools.apidemo import serve_for_demo
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.faultplan import fix_blocked, fresh_world, inject
from dossierflow.tools.maildemo import mail_failures
from dossierflow.tools.progress import Progress
from dossierflow.tools.workload import (
    Planned,
    demo_tasks,
    dossiers,
)
from store import OfficeRecord, Role, Store, UserRecord
from workers.accounting.simulated import SimulatedPackage
from workers.vocabulary import TaskStatus

OFFICES = ["office1", "office2"]
CONNECTORS_PER_OFFICE = 3
TERMINAL = (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED)
FINISHED = (TaskStatus.DONE, TaskStatus.CANCELLED, TaskStatus.SKIPPED)


def run_demo(settings: Settings, tasks: int = 2000, dossiers_count: int = 100) -> int:
    """Run the demo; exit status 0 only if nothing was lost or out of order."""
    state = Path(".dossierflow/demo")
    settings = replace(
        settings,
        mongo_db=settings.mongo_db + "_demo",
        simpackage_path=(state / "simulated-package.sqlite3").resolve(),
        simpackage_latency_ms="5,25",
        sweep_grace_s=20.0,
        retry_delays_s="1,2",
    )
    cluster = Cluster(settings, "dossierflow-demo", settings.mongo_db, state / "logs")
    store, package = _fresh_state(settings, cluster, state, dossiers_count)
    print(
        f"dossierflow demo: {len(OFFICES)} offices, {dossiers_count} dossiers, "
        f"{CONNECTORS_PER_OFFICE} connectors per office, {tasks} tasks"
    )
    print(
        f"  logs in {cluster.log_dir}/, RabbitMQ console http://127.0.0.1:15672 "
        f"(guest/guest, vhost {cluster.vhost})"
    )
    cluster.start_dispatcher("dispatcher-1")
    cluster.start_dispatcher("dispatcher-2")  # a hot standby
    for office in OFFICES:
        for n in range(1, CONNECTORS_PER_OFFICE + 1):
            cluster.start_worker(office, f"worker-{office}-{n}")
    start = time.monotonic()
    client = Client.connect(cluster_settings(settings, cluster), store)
    url, token, stop_api = serve_for_demo(
        cluster_settings(settings, cluster), settings.mongo_db, port=_api_port()
    )
    print(f"  monitoring page: {url.rstrip('/')}/  (log in with the token {token})")
    try:
        plan = demo_tasks(OFFICES, dossiers_count, tasks)
        originals = list(plan)
        faults = inject(plan, package)
        ids = _submit(client, plan)
        # Equal syncs submitted while one waits share its id (coalescing).
        total = len(set(ids))
        print(f"  {len(ids) - total} sync(s) coalesced into an equal waiting one")
        _poison(cluster)
        keys = [(i, f"{p.office}.{p.dossier}") for i, p in zip(ids, plan, strict=True)]
        wait_finished(store, keys, "phase 1", settled=1)
        _report_blocked(store)
        # Rule 4: one mail per new instruction, into a local SMTP sink.
        mails = mail_failures(settings, store, (state / "mail").resolve())
        print(f"  {mails.describe()}")
        print("  fixing: doing what each instruction says, then restart / cancel / resolve")
        actions = fix_blocked(
            client,
            package,
            store,
            {ids[i]: originals[i] for i in faults},
            settle=lambda: wait_finished(store, keys, "fixing", settled=2),
        )
        print(f"  actions taken: {dict(sorted(actions.items()))}")
        wait_finished(store, keys, "phase 2")
    finally:
        client.close()
        stop_api()
        codes = cluster.stop()
    elapsed = time.monotonic() - start
    planned = list(zip(ids, plan, strict=True))
    return _summary(store, package, planned, codes=codes, elapsed=elapsed)


def _summary(
    store: Store,
    package: SimulatedPackage,
    submitted: list[tuple[str, Planned]],
    *,
    codes: dict[str, int],
    elapsed: float,
) -> int:
    """Check the outcome against the package, print it; 0 when nothing was lost or reordered."""
    status = store.tasks.statuses(sorted({task_id for task_id, _ in submitted}))
    counts = Counter(status.values())
    expected: dict[tuple[str, str], list[str]] = defaultdict(list)
    expect_ok: set[str] = set()
    for task_id, item in submitted:
        if task_id not in expect_ok and status.get(task_id) == TaskStatus.DONE.value:
            expected[(item.office, item.dossier)].append(task_id)
            expect_ok.add(task_id)
    report = package.check_order(expected, expect_ok)
    total = len({task_id for task_id, _ in submitted})
    unfinished = total - sum(counts.get(s.value, 0) for s in FINISHED)
    lost = len(report.lost) + unfinished
    failed = sum(1 for i in store.instructions.find() if i.task_id)
    print(f"  executions across dossiers overlapping in time: {report.overlaps_across_dossiers}")
    print(f"  executions inside one dossier overlapping: {report.overlaps_within_dossier}")
    print(
        f"  bookings in the simulated package: {len(package.bookings(include_deleted=True))}, "
        f"double-booked keys: {report.double_booked}"
    )
    statuses = dict(sorted(counts.items()))
    print(f"  final statuses: {statuses}; exit codes {sorted(set(codes.values()))}")
    print(
        f"dossierflow demo: {counts.get('done', 0)} done, {failed} failed, {lost} lost, "
        f"{report.out_of_order} out of order in {elapsed:.1f} s"
    )
    return 0 if lost == 0 and report.out_of_order == 0 else 1


def _api_port(preferred: int = 8080) -> int:
    """The monitoring page's port: 8080 when it is free, else any free one."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free port for the monitoring page")


def _fresh_state(
    settings: Settings, cluster: Cluster, state: Path, dossiers_count: int
) -> tuple[Store, SimulatedPackage]:
    shutil.rmtree(state / "mail", ignore_errors=True)  # the mails of the previous run
    store, package = fresh_world(cluster, state, dossiers(OFFICES, dossiers_count))
    for n, office in enumerate(OFFICES):
        language = ("nl", "fr")[n % 2]
        store.offices.save(
            OfficeRecord(office, f"Accountancy {office}", "Europe/Brussels", language)
        )
        store.users.save(
            UserRecord(f"admin@{office}", office, Role.ADMIN, f"admin@{office}.example", language)
        )
    return store, package


def cluster_settings(settings: Settings, cluster: Cluster) -> Settings:
    """Settings of a client inside the cluster's virtual host and database."""
    return replace(settings, amqp_url=cluster.amqp_url, mongo_db=cluster.database)


def _submit(client: Client, plan: list[Planned], batch: int = 100) -> list[str]:
    """Submit the plan the way the platform's nightly loads come: in batches."""
    bar = Progress("submitting", len(plan))
    ids: list[str] = []
    for start in range(0, len(plan), batch):
        chunk = [
            Submission(p.office, p.dossier, p.kind, p.payload) for p in plan[start : start + batch]
        ]
        for result in client.submit_many(chunk):
            if result.task_id is None:
                raise RuntimeError(f"the demo's own submission was refused: {result.error}")
            ids.append(result.task_id)
        bar.update(len(ids))
    bar.close()
    return ids


def _poison(cluster: Cluster) -> None:
    """A message no connector can read, as a broken platform release might send."""
    conn = Connection.open(cluster.amqp_url, name="demo-poison")
    channel = conn.channel(confirm=True)
    channel.publish_raw(
        topology.WORK_EXCHANGE, f"{OFFICES[1]}.d0001", b"\x00garbled{", message_id="garbled-1"
    )
    conn.close()


def wait_finished(
    store: Store,
    submitted: list[tuple[str, str]],
    label: str,
    *,
    settled: int = 0,
    every: float = 0.5,
) -> None:
    """Poll until every task finished, or (`settled`) nothing moves any more.

    `submitted` holds (task id, dossier key) in submission order. A dossier runs its
    tasks in that order and releases one only after every earlier one finished, so its
    last task finished means all of them did: a poll reads one task per unfinished
    dossier by `_id` (and, in phase 1, the blocked dossiers), never every task, and polls
    less often when a read is slow: the demo's own polling must not load the store it
    demonstrates. Settled is `settled` polls in a row in which every unfinished dossier
    is blocked (after actions, two: a decision is written a moment before its dossier's
    document).
    """
    tasks: dict[str, list[str]] = defaultdict(list)
    for task_id, key in submitted:
        if task_id not in tasks[key]:  # a coalesced submission names an earlier task
            tasks[key].append(task_id)
    total = sum(len(ids) for ids in tasks.values())
    bar = Progress(label, total)
    deadline = time.monotonic() + 900
    ended = {s.value for s in FINISHED}
    unfinished = dict(tasks)
    calm = 0
    while unfinished and time.monotonic() < deadline:
        began = time.monotonic()
        statuses = store.tasks.statuses([ids[-1] for ids in unfinished.values()])
        unfinished = {k: ids for k, ids in unfinished.items() if statuses.get(ids[-1]) not in ended}
        blocked = {d.key for d in store.dossiers.blocked()} & unfinished.keys()
        bar.update(total - sum(len(ids) for ids in unfinished.values()), f"blocked {len(blocked)}")
        calm = calm + 1 if unfinished.keys() <= blocked else 0
        if not unfinished or (settled and calm >= settled):
            break
        time.sleep(max(every, 2 * (time.monotonic() - began)))
    bar.close()


def _report_blocked(store: Store) -> None:
    per_code = Counter(i.code for i in store.instructions.find())
    print("  instructions created per code:")
    for code, n in sorted(per_code.items()):
        severity = next(i.severity for i in store.instructions.find() if i.code == code)
        print(f"    {code:<22} {severity:<6} {n}")
    blocked = store.dossiers.blocked()
    waiting = Counter(
        f"{t.office}.{t.dossier}" for t in store.tasks.find(statuses=[TaskStatus.WAITING])
    )
    print(f"  dossiers blocked: {len(blocked)}")
    for d in blocked:
        print(
            f"    {d.key:<16} by task {d.active}, {waiting.get(d.key, 0)} task(s) waiting behind it"
        )
    print("  (ops: dossierflow tasks list; dossierflow tasks restart|cancel|resolve TASK_ID)")
