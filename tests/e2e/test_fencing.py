"""A paused partition owner that wakes up cannot write over its successor."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from store import Store
from tests.e2e.helpers import (
    client_for,
    package_with,
    process_log,
    start_active_and_standby,
    submit_bookings,
    wait_all_done,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

OFFICE = "office1"


def test_paused_owner_wakes_up_fenced_and_nothing_is_lost_or_reordered(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    dossiers = [f"d{i:03d}" for i in range(12)]
    package = package_with(settings.simpackage_path, OFFICE, dossiers)
    cluster = make_cluster(simpackage_latency_ms="10,30", heartbeat_s=2)
    start_active_and_standby(cluster, "dispatcher-old", "dispatcher-new")
    cluster.start_worker(OFFICE, "worker-1")
    cluster.start_worker(OFFICE, "worker-2")
    client = client_for(cluster, store)
    expected = submit_bookings(client, OFFICE, dossiers, count=80, seed=1)
    wait_for(lambda: store.tasks.count().get("done", 0) >= 10, 60, "some tasks done")

    cluster.kill("dispatcher-old", signal.SIGSTOP)  # a zombie owner: alive, silent
    more = submit_bookings(client, OFFICE, dossiers, count=80, seed=2)
    for key, ids in more.items():
        expected[key].extend(ids)
    # The broker drops the silent connection after two missed heartbeats; the standby
    # becomes active, takes new epochs and runs the work.
    wait_for(
        lambda: "partition.acquired" in process_log(cluster, "dispatcher-new"), 60, "the takeover"
    )
    done_before_wake = store.tasks.count().get("done", 0)
    wait_for(
        lambda: store.tasks.count().get("done", 0) >= done_before_wake + 20, 60, "work going on"
    )
    cluster.kill("dispatcher-old", signal.SIGCONT)  # it wakes up in the middle of what it did
    wait_all_done(store, 160, timeout=120)
    client.close()

    report = package.check_order(expected)
    assert report.lost == ()
    assert report.out_of_order == 0
    assert report.overlaps_within_dossier == 0
    assert len(package.bookings()) == 160
    # Every partition moved to a newer epoch, and every dossier's last write carries it:
    # a write of the woken owner landing after its successor's would leave an older one.
    partitions = store.collection("partitions").find({"_id": {"$regex": "^dossierflow.control"}})
    epochs = {p["_id"]: p["epoch"] for p in partitions}
    assert epochs and all(e >= 2 for e in epochs.values())
    for doc in store.collection("dossiers").find():
        assert doc["epoch"] >= 2, f"dossier {doc['_id']} last written by the paused owner"
    old = process_log(cluster, "dispatcher-old")
    assert "partitions.reconnecting" in old or "partition.fenced" in old
