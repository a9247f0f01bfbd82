"""`dossierflow chaos`: the real processes under a seeded schedule of faults, then checked.

Two dispatchers, connectors for two offices on the simulated package and the instruction
mailer (`reminder mail`, into a local SMTP sink) run under a supervisor (a killed process
is started again). The workload is submitted while faults drawn from the seed hit the
processes, the broker, the store and the package; then everything is healed, blocked
dossiers are fixed as their instructions say, and once nothing moves the checker reads
the package's log, the store and the mails the sink received.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from broker.admin import Admin
from dossierflow.settings import Settings
from dossierflow.tools import chaoscheck as cc
from dossierflow.tools.chaosactors import Fixer, Submitter
from dossierflow.tools.chaosfaults import (
    CLUSTER_FAULTS,
    FAULTS,
    KNOWN_FAULTS,
    SERVICE_FAULTS,
    Injector,
    Services,
)
from dossierflow.tools.chaosmail import MailSide, add_people
from dossierflow.tools.chaosreport import render
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.faultplan import fresh_world, inject
from dossierflow.tools.workload import (
    Planned,
    demo_tasks,
)
from dossierflow.tools.workload import dossiers as spread
from store import ActionRecord, Store, StoreError
from workers.accounting.simulated import SimulatedPackage
from workers.vocabulary import ActionStatus

OFFICES = ["office1", "office2"]
STATE = Path(".dossierflow/chaos")
# Nothing moved for this long: longer than the retry delays and the sweeper's interval (a
# task still `submitted` is older than the sweeper's grace by then, so it would be swept),
# and than it takes the sweeper to report a release whose work message is gone (its
# queue empty for the grace, 20 s, in figures up to 5 s old).
QUIET_S = 35.0


@dataclass(frozen=True)
class Options:
    """What to run: workload size, seed, the faults to inject and how long to inject them."""

    tasks: int = 1000
    dossiers: int = 50
    seed: int = 1
    faults: tuple[str, ...] = FAULTS
    duration_s: float = 90.0


def chaos_settings(settings: Settings) -> Settings:
    """The run's settings: its own database and package; short timers so faults heal fast."""
    return replace(
        settings,
        mongo_db=settings.mongo_db + "_chaos",
        simpackage_path=(STATE / "simulated-package.sqlite3").resolve(),
        simpackage_latency_ms="10,60",
        heartbeat_s=min(settings.heartbeat_s, 5),
        sweep_grace_s=20.0,
        sweep_interval_s=1.0,
        retry_delays_s="1,2,4",
    )


def run_chaos(settings: Settings, options: Options) -> int:
    """Run, heal, check; print the table and the last line; 0 only when every count is 0."""
    settings = chaos_settings(settings)
    # Our own connections die with the broker on purpose: pika's tracebacks are noise here.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    services = Services(settings)
    faults, on_cluster = _possible(options.faults, services)
    rng = random.Random(options.seed)
    cluster = Cluster(settings, "dossierflow-chaos", settings.mongo_db, STATE / "logs")
    store, package = fresh_world(cluster, STATE, spread(OFFICES, options.dossiers))
    add_people(store, spread(OFFICES, options.dossiers))
    mail = MailSide(cluster, (STATE / "mail").resolve(), settings.support_mailbox)
    plan, originals = _workload(options, package)
    print(
        f"dossierflow chaos: seed {options.seed}, {options.tasks} tasks over {options.dossiers}"
        f" dossiers, faults {', '.join(faults)} for {options.duration_s:.0f} s"
    )
    print(f"  logs in {cluster.log_dir}/, mails in {mail.maildir}/")
    _start(cluster, mail)
    _wait_ready(cluster)
    begin = time.time()
    submitter = Submitter(settings, cluster, store)
    fixer = Fixer(settings, cluster, store, package, {})
    injector = Injector(
        cluster,
        services,
        package,
        rng,
        OFFICES,
        spread(OFFICES, options.dossiers),
        fixer.round,
        kill_mailer=mail.kill_mid_send,
    )
    try:
        schedule = draw_schedule(rng, faults, options.duration_s)
        chaos = threading.Thread(target=_inject_all, args=(injector, schedule, begin), daemon=True)
        chaos.start()
        _submit_all(plan, originals, submitter, fixer, options=options, begin=begin)
        late = sum(1 for a in submitter.accepted if not a.announced)
        print(f"  submitted {len(plan)} in {time.time() - begin:.0f} s ({late} not announced)")
        chaos.join()
        print(f"  {len(injector.windows)} faults injected; healing")
        if set(faults) & set(SERVICE_FAULTS):
            services.start()
        if on_cluster:
            services.start_cluster()
        package.set_unreachable(0)
        _settle(store, package, fixer, mail)
    finally:
        submitter.close()
        codes = cluster.stop()
        mail.stop()
    elapsed = time.time() - begin
    print(f"  restarts by the supervisor: {dict(sorted(cluster.restarts.items()))}")
    print(f"  exit codes at the end: {sorted(set(codes.values()))}; actions {dict(fixer.done)}")
    observed = observe(
        store, package, submitter.accepted, fixer.records, injector.poison, mail=mail
    )
    print(
        f"  mails: {len(observed.mails)} received by the sink,"
        f" {len(observed.expected_mails)} called for by the instructions"
    )
    verdict = cc.check(observed)
    for line in render(verdict, injector.windows, len(submitter.accepted), elapsed):
        print(line)
    return 0 if verdict.ok else 1


def _possible(asked: tuple[str, ...], services: Services) -> tuple[tuple[str, ...], bool]:
    """The faults these services allow, and whether the broker is the three-node cluster."""
    faults = asked
    if set(faults) & set(SERVICE_FAULTS) and not services.controls_settings():
        print("  services.sh does not run this broker and store: no broker or store faults")
        faults = tuple(f for f in faults if f not in SERVICE_FAULTS)
    on_cluster = bool(set(faults) & set(CLUSTER_FAULTS)) and services.controls_cluster()
    if set(faults) & set(CLUSTER_FAULTS) and not on_cluster:
        if asked != KNOWN_FAULTS:  # asked for by name, not as one of "every fault"
            print("  the broker is not `services.sh cluster`: no node-loss fault")
        faults = tuple(f for f in faults if f not in CLUSTER_FAULTS)
    return faults, on_cluster


def _workload(options: Options, package: SimulatedPackage) -> tuple[list[Planned], list[Planned]]:
    """The tasks to submit (one failing per failure class per 1,000) and what was meant."""
    plan = demo_tasks(OFFICES, options.dossiers, options.tasks, seed=options.seed)
    originals = list(plan)
    for start in range(0, len(plan), 1000):
        chunk = plan[start : start + 1000]
        inject(chunk, package)
        plan[start : start + len(chunk)] = chunk
    return plan, originals


def _submit_all(
    plan: list[Planned],
    originals: list[Planned],
    submitter: Submitter,
    fixer: Fixer,
    *,
    options: Options,
    begin: float,
) -> None:
    """Submit over 70 % of the fault time; some in batches of 20 (`submit_many`)."""
    pace = options.duration_s * 0.7 / max(1, len(plan))
    batches = random.Random(options.seed + 1)  # apart from the faults' draws
    i = 0
    while i < len(plan):
        time.sleep(max(0.0, begin + i * pace - time.time()))
        items = plan[i : i + (20 if batches.random() < 0.3 else 1)]
        ids = submitter.submit_batch(items) if len(items) > 1 else [submitter.submit(items[0])]
        for k, task_id in enumerate(ids):
            fixer.originals[task_id] = originals[i + k]
        i += len(items)


def _start(cluster: Cluster, mail: MailSide) -> None:
    cluster.start_dispatcher("dispatcher-1")
    time.sleep(1.0)  # the first to register is the active one; the second stands by
    cluster.start_dispatcher("dispatcher-2")
    for office in OFFICES:
        for n in (1, 2):
            cluster.start_worker(office, f"worker-{office}-{n}")
        # Some tasks take much longer: this connector's package answers in 0.2-1.5 s.
        cluster.start(
            f"worker-{office}-slow",
            *("worker", "--office", office, "--adapter", "simulated"),
            env={"DOSSIERFLOW_SIMPACKAGE_LATENCY_MS": "200,1500"},
        )
    mail.start()
    cluster.supervise()


def _wait_ready(cluster: Cluster, timeout_s: float = 120) -> None:
    """Until every office's work queue has its connectors and the partitions a consumer."""
    admin = Admin(cluster.settings.rabbitmq_api)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumers = {q["name"]: q.get("consumers", 0) for q in admin.queues(cluster.vhost)}
        work = [n for n in consumers if n.startswith("dossierflow.work.")]
        if len(work) == len(OFFICES) and all(consumers[n] > 0 for n in work):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the cluster did not come up in {timeout_s:.0f} s: see {cluster.log_dir}")


def draw_schedule(
    rng: random.Random, faults: tuple[str, ...], duration_s: float
) -> list[tuple[float, str]]:
    """(seconds from the start, fault) for each fault at least once, more on longer runs."""
    cheap = ("connector-kill", "poison", "actions", "connections-close", "package-unreachable")
    events = []
    for name in faults:
        times = max(1, int(duration_s // (25 if name in cheap else 60)))
        events += [(rng.uniform(0.05, 0.8) * duration_s, name) for _ in range(times)]
    return sorted(events)


def _inject_all(injector: Injector, schedule: list[tuple[float, str]], begin: float) -> None:
    for offset, name in schedule:
        time.sleep(max(0.0, begin + offset - time.time()))
        try:
            window = injector.inject(name)
        except Exception as exc:  # a fault that could not be injected is reported, not fatal
            print(f"  fault {name} failed: {type(exc).__name__}: {exc}")
            continue
        took = window.end - window.start
        print(f"  fault {name} at {window.start - begin:.0f} s ({took:.1f} s): {window.detail}")


def _settle(
    store: Store, package: SimulatedPackage, fixer: Fixer, mail: MailSide, timeout_s: float = 900
) -> None:
    """Until nothing moves (mails included) and no dossier is blocked: wait, fix what is."""
    rng = random.Random(0)
    deadline = time.monotonic() + timeout_s
    last: object = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            now = (
                store.tasks.count(),
                len(package.executions()),
                mail.received_count(),
                len(store.dossiers.blocked()),
            )
        except StoreError:
            now = None
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            if now is not None and now[-1] == 0:
                return
            fixer.round(rng)
            quiet_since = time.monotonic()
        time.sleep(0.5)
    print(f"  still moving after {timeout_s:.0f} s")


def observe(
    store: Store,
    package: SimulatedPackage,
    accepted: list[cc.Accepted],
    actions: list[ActionRecord],
    poison: list[cc.Poison],
    *,
    mail: MailSide | None = None,
) -> cc.Observed:
    """Read what the checker needs from the package, the store and the mail sink."""
    decided = [store.actions.get(a.id) for a in actions]
    applied = [
        cc.AppliedAction(a.task_id, a.type.value)
        for a in decided
        if a is not None and a.status is ActionStatus.APPLIED
    ]
    return cc.Observed(
        accepted=accepted,
        executions=package.executions(),
        bookings_per_key=Counter(b.idempotency_key for b in package.bookings(include_deleted=True)),
        tasks={
            t.id: cc.StoredTask(t.id, t.status.value, t.failures, t.seq) for t in store.tasks.find()
        },
        blocked=frozenset(d.key for d in store.dossiers.blocked()),
        actions=applied,
        instructions=[
            cc.Instruction(i.id, i.task_id, i.office, i.dossier, i.raw)
            for i in store.instructions.find()
        ],
        poison=poison,
        mails=mail.received(store) if mail else [],
        expected_mails=mail.expected(store) if mail else [],
    )
