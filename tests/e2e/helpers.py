"""Shared steps of the end-to-end tests: companies in the package, submitting, waiting."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from dispatcher.client import Client
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import JOURNALS, PERIODS, VAT_CODES, booking, company_code
from store import Store
from tests.waiting import wait_for
from workers.accounting.simulated import SimulatedPackage
from workers.vocabulary import TaskStatus

Expected = dict[tuple[str, str], list[str]]


def package_with(path: Path, office: str, dossiers: list[str]) -> SimulatedPackage:
    """A simulated package where every dossier's company exists with open periods."""
    package = SimulatedPackage(path)
    for dossier in dossiers:
        package.create_company(company_code(office, dossier), PERIODS, JOURNALS, VAT_CODES)
    return package


def client_for(cluster: Cluster, store: Store) -> Client:
    """A submit client inside the cluster's virtual host and database."""
    return Client.connect(replace(cluster.settings, amqp_url=cluster.amqp_url), store)


def submit_bookings(
    client: Client, office: str, dossiers: list[str], count: int, seed: int = 1
) -> Expected:
    """Submit `count` booking proposals round-robin over the dossiers."""
    rng = random.Random(seed)
    expected: Expected = defaultdict(list)
    for i in range(count):
        dossier = dossiers[i % len(dossiers)]
        payload = booking(company_code(office, dossier), f"p{seed}-{i:05d}", rng)
        task_id = client.submit(office, dossier, "booking_proposal.process", payload)
        expected[(office, dossier)].append(task_id)
    return expected


def wait_all_done(store: Store, total: int, timeout: float) -> None:
    """Wait until `total` tasks are done."""
    wait_for(
        lambda: store.tasks.count([TaskStatus.DONE]).get("done", 0) >= total,
        timeout,
        f"{total} tasks done (now {store.tasks.count()})",
        every=0.25,
    )


def process_log(cluster: Cluster, name: str) -> str:
    """What process `name` of the cluster logged so far."""
    path = Path(cluster.log_dir) / f"{name}.log"
    return path.read_text() if path.exists() else ""


def start_active_and_standby(cluster: Cluster, active: str, standby: str) -> None:
    """Two dispatchers, the first one started first (so active on every partition)."""
    cluster.start_dispatcher(active)
    wait_for(lambda: "dispatcher.started" in process_log(cluster, active), 30, active)
    cluster.start_dispatcher(standby)
    wait_for(lambda: "dispatcher.started" in process_log(cluster, standby), 30, standby)
