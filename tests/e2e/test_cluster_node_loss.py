"""A three-node RabbitMQ cluster loses the node that leads the most partitions mid-run.

The cluster is `deploy/local/services.sh cluster` (ports 5681-5683, beside the single
node the other tests use). This test starts it when it is not running and stops it again
at the end; it never touches the single node or FerretDB. It is skipped, saying why, only
when the cluster cannot be started on this machine.
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.admin import Admin
from dossierflow.settings import Settings
from dossierflow.tools.chaosactors import Submitter
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import Planned, booking, company_code
from store import Store
from tests.e2e.helpers import package_with, start_active_and_standby, wait_all_done
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "services.sh"
OFFICE = "office1"
DOSSIERS = [f"d{i:03d}" for i in range(20)]
PACE_S = 0.1  # between two submissions, from start to well after the node is back
MAX_TASKS = 2000


@dataclass(frozen=True)
class BrokerCluster:
    """The running three-node cluster: what `services.sh cluster env` prints."""

    amqp_url: str
    rabbitmq_api: str
    replicas: int

    def services(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `services.sh cluster ARGS`."""
        return subprocess.run(
            ["bash", str(SCRIPT), "cluster", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _cluster_env() -> dict[str, str]:
    done = subprocess.run(
        ["bash", str(SCRIPT), "cluster", "env"], capture_output=True, text=True, check=True
    )
    return dict(re.findall(r"^export DOSSIERFLOW_(\w+)='?([^'\n]*)'?$", done.stdout, re.M))


@pytest.fixture(scope="module")
def broker_cluster() -> Iterator[BrokerCluster]:
    """The cluster, started here (and stopped at the end) unless it already runs."""
    env = _cluster_env()
    found = BrokerCluster(env["AMQP_URL"], env["RABBITMQ_API"], int(env["QUORUM_REPLICAS"]))
    started_here = found.services("status", timeout=60).returncode != 0
    if started_here:
        t0 = time.monotonic()
        done = found.services("start", timeout=400)
        if done.returncode != 0:
            found.services("stop")
            pytest.skip(
                "the three-node RabbitMQ cluster could not be started "
                f"(services.sh cluster start): {done.stderr.strip()[-1500:]}"
            )
        print(f"cluster started in {time.monotonic() - t0:.0f} s")
    try:
        yield found
    finally:
        # A node this test stopped comes back even when the test failed half-way.
        found.services("start")
        if started_here:
            found.services("stop")


def _plan() -> Iterator[Planned]:
    rng = random.Random(11)
    for i in range(MAX_TASKS):
        dossier = DOSSIERS[i % len(DOSSIERS)]
        code = company_code(OFFICE, dossier)
        yield Planned(OFFICE, dossier, "booking_proposal.process", booking(code, f"p{i:05d}", rng))


def _leaders(admin: Admin, vhost: str) -> tuple[Counter[str], dict[str, list[str]]]:
    """Partitions led per node, and every quorum queue's members."""
    queues = [q for q in admin.queues(vhost) if q.get("type") == "quorum"]
    led = Counter(
        str(q.get("leader"))
        for q in queues
        if re.fullmatch(r"dossierflow\.control\.p\d+", q["name"])
    )
    return led, {q["name"]: sorted(q.get("members", [])) for q in queues}


def _done(store: Store) -> int:
    return store.tasks.count([TaskStatus.DONE]).get("done", 0)


@pytest.fixture
def cluster_vhost(broker_cluster: BrokerCluster, settings: Settings) -> Iterator[str]:
    """This test's virtual host on the cluster; deleted after its processes stopped."""
    admin = Admin(broker_cluster.rabbitmq_api, timeout=60)  # deleting quorum queues is slow
    admin.create_vhost(settings.mongo_db)
    yield settings.mongo_db
    admin.delete_vhost(settings.mongo_db)


class Submissions:
    """A platform submitting one task every PACE_S in a thread, through any outage."""

    def __init__(self, cluster: Cluster, store: Store) -> None:
        self.submitter = Submitter(cluster.settings, cluster, store)
        self.errors: list[BaseException] = []
        self._enough = threading.Event()
        self._thread = threading.Thread(target=self._run, name="submitter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        begin = time.monotonic()
        try:
            for i, item in enumerate(_plan()):
                if self._enough.is_set():
                    return
                time.sleep(max(0.0, begin + i * PACE_S - time.monotonic()))
                self.submitter.submit(item, timeout_s=120)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    @property
    def count(self) -> int:
        """Tasks stored so far."""
        return len(self.submitter.accepted)

    def halt(self) -> None:
        """Stop submitting and close the client (again: nothing happens)."""
        self._enough.set()
        self._thread.join(timeout=150)
        self.submitter.close()

    def stop(self) -> dict[tuple[str, str], list[str]]:
        """Stop submitting; the task ids per (office, dossier) in submission order."""
        self.halt()
        assert not self._thread.is_alive() and not self.errors, self.errors
        expected: dict[tuple[str, str], list[str]] = {}
        for accepted in self.submitter.accepted:
            expected.setdefault((accepted.office, accepted.dossier), []).append(accepted.task_id)
        return expected


def _lose_and_restore(
    broker: BrokerCluster, vhost: str, partitions: int, store: Store, submissions: Submissions
) -> str:
    """Stop the node leading the most partitions, see the run go on, start it again."""
    led, members = _leaders(Admin(broker.rabbitmq_api), vhost)
    assert sum(led.values()) == partitions, led
    for name, nodes in members.items():
        assert len(nodes) == broker.replicas, f"{name} has replicas on {nodes}"
    victim, most = led.most_common(1)[0]
    number = re.fullmatch(r"dossierflow-c(\d+)@.*", victim)
    assert number, victim

    t0 = time.monotonic()
    stopped = broker.services("stop-node", number[1], timeout=120)
    try:
        assert stopped.returncode == 0, stopped.stderr
        down_at, done_at, submitted_at = time.monotonic(), _done(store), submissions.count
        # The run goes on without the node: tasks submitted and finished while it is down.
        wait_for(
            lambda: _done(store) >= done_at + 60 and submissions.count >= submitted_at + 30,
            90,
            f"60 tasks done and 30 submitted after {victim} stopped (done at stop: {done_at})",
            every=0.25,
        )
        progress = _done(store) - done_at
        assert broker.services("status", timeout=60).returncode != 0, "the node is not down"
    finally:
        started = broker.services("start-node", number[1])
    assert started.returncode == 0, started.stderr
    back = time.monotonic()
    wait_for(lambda: broker.services("status", timeout=60).returncode == 0, 60, "3 nodes up")
    return (
        f"{victim} led {most} of {partitions} partitions; stopping it took {down_at - t0:.0f} s; "
        f"{progress} tasks done while it was down ({back - down_at:.0f} s)"
    )


def test_losing_the_node_that_leads_most_partitions_mid_run_loses_nothing_and_keeps_order(
    broker_cluster: BrokerCluster,
    settings: Settings,
    cluster_vhost: str,
    store: Store,
    make_cluster: Callable[..., Cluster],
) -> None:
    package = package_with(settings.simpackage_path, OFFICE, DOSSIERS)
    cluster = make_cluster(
        amqp_url=broker_cluster.amqp_url,
        rabbitmq_api=broker_cluster.rabbitmq_api,
        quorum_replicas=broker_cluster.replicas,
        simpackage_latency_ms="10,30",
        sweep_grace_s=5.0,
        heartbeat_s=5,
    )
    start_active_and_standby(cluster, "dispatcher-1", "dispatcher-2")
    for n in range(3):
        cluster.start_worker(OFFICE, f"worker-{n}")
    cluster.supervise()  # as systemd or Kubernetes would
    submissions = Submissions(cluster, store)
    try:
        wait_for(lambda: _done(store) >= 40, 90, "40 tasks done before the node loss")
        summary = _lose_and_restore(
            broker_cluster, cluster_vhost, settings.partitions, store, submissions
        )
        # Submissions go on a little after the node is back, then every task must finish.
        after = submissions.count
        wait_for(lambda: submissions.count >= after + 30, 60, "30 submissions after the return")
        expected = submissions.stop()
    finally:
        submissions.halt()
    total = submissions.count
    wait_all_done(store, total, timeout=120)

    report = package.check_order(expected)
    assert report.lost == ()
    assert report.out_of_order == 0
    assert report.overlaps_within_dossier == 0, "two tasks of one dossier ran at once"
    assert report.double_booked == 0
    assert len(package.bookings()) == total
    assert store.tasks.count().get("done", 0) == total, store.tasks.count()
    print(f"\n{summary}; {total} tasks; process restarts {dict(cluster.restarts)}")
