"""The page's copy of an office kept current by change notices, on the real broker and store.

A notice as the sequencer publishes it makes the copy read again only the tasks and
dossiers it names; a feed that lost its connection makes the copy read whole again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from broker import topology
from broker.admin import Admin
from broker.rabbitmq import Connection
from dispatcher.api.changes import ChangeFeed
from dispatcher.api.snapshot import Snapshots
from dispatcher.batchwrite import RESYNC
from dossierflow.settings import Settings
from store import Store, TaskRecord
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OFFICE = "office1"
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def feed(settings: Settings) -> Iterator[ChangeFeed]:
    changes = ChangeFeed(settings.amqp_url, name="test-page-changes").start()
    yield changes
    changes.close()


def _notify(settings: Settings, tasks: list[str], dossiers: list[str]) -> None:
    """Publish a notice the way the sequencer does (after its write)."""
    conn = Connection.open(settings.amqp_url, name="test-notifier")
    try:
        publisher = conn.publisher()
        body = {"v": 1, "tasks": {OFFICE: tasks}, "dossiers": {OFFICE: dossiers}}
        publisher.notify(topology.CHANGES_EXCHANGE, json.dumps(body).encode())
        publisher.wait()
    finally:
        conn.close()


def _seed(store: Store, n: int) -> list[str]:
    ids = [f"t{k:03d}" for k in range(n)]
    for k, task_id in enumerate(ids):
        store.tasks.insert(
            TaskRecord(task_id, OFFICE, f"d{k % 3}", "dossier.sync", {}, TaskStatus.WAITING, AT)
        )
    return ids


def _status(snapshots: Snapshots, task_id: str) -> TaskStatus | None:
    found = [t for t in snapshots.of(OFFICE).tasks if t.id == task_id]
    return found[0].status if found else None


def test_a_notice_makes_the_copy_read_only_what_it_names(
    settings: Settings, store: Store, feed: ChangeFeed
) -> None:
    assert feed.live
    ids = _seed(store, 20)
    snapshots = Snapshots(store.monitoring, changes=feed)
    assert len(snapshots.of(OFFICE).tasks) == 20 and snapshots.whole_reads == 1

    # Written without a notice: the copy does not know (it reads nothing on a timer).
    store.tasks.update(ids[0], TaskStatus.DONE, AT)
    for _ in range(3):
        assert _status(snapshots, ids[0]) is TaskStatus.WAITING

    store.tasks.update(ids[1], TaskStatus.DONE, AT)
    store.tasks.insert(
        TaskRecord("t-new", OFFICE, "d9", "dossier.sync", {}, TaskStatus.WAITING, AT)
    )
    _notify(settings, [ids[1], "t-new"], ["d9"])
    wait_for(lambda: _status(snapshots, ids[1]) is TaskStatus.DONE, 20, "the notified change")
    assert _status(snapshots, "t-new") is TaskStatus.WAITING
    assert _status(snapshots, ids[0]) is TaskStatus.WAITING  # not named, not read
    assert snapshots.whole_reads == 1 and snapshots.change_reads >= 1
    assert "d9" in {row.dossier for row in snapshots.of(OFFICE).overview}


def test_a_copy_is_read_whole_after_the_feed_lost_its_connection(
    settings: Settings, store: Store, feed: ChangeFeed
) -> None:
    ids = _seed(store, 5)
    snapshots = Snapshots(store.monitoring, changes=feed)
    snapshots.of(OFFICE)
    generation = feed.generation
    vhost = settings.mongo_db  # the test's virtual host has the test's name
    wait_for(lambda: Admin(settings.rabbitmq_api).close_connections(vhost) > 0, 20, "closed")
    store.tasks.update(ids[2], TaskStatus.DONE, AT)  # missed: nobody was listening
    wait_for(lambda: feed.live and feed.generation > generation, 30, "the feed back")
    wait_for(lambda: _status(snapshots, ids[2]) is TaskStatus.DONE, 20, "a whole read")
    assert snapshots.whole_reads >= 2


def test_a_notice_nobody_listens_to_is_reported_and_a_resync_makes_copies_read_whole(
    settings: Settings, store: Store
) -> None:
    conn = Connection.open(settings.amqp_url, name="test-notifier")
    try:
        ch = conn.channel(confirm=True)
        ch.declare_listener(
            topology.CHANGES_EXCHANGE, max_length=10
        )  # declares the exchange (and a queue)
        conn.close()  # its exclusive queue goes: nobody listens now
        conn = Connection.open(settings.amqp_url, name="test-notifier")
        publisher = conn.publisher()
        body = json.dumps({"v": 1, "tasks": {OFFICE: ["t1"]}, "dossiers": {}}).encode()
        publisher.notify(topology.CHANGES_EXCHANGE, body)
        publisher.wait()
        assert publisher.unheard(), "a notice no queue took is reported"
        assert not publisher.unheard(), "once"

        feed = ChangeFeed(settings.amqp_url, name="test-page-changes").start()
        try:
            ids = _seed(store, 3)
            snapshots = Snapshots(store.monitoring, changes=feed)
            snapshots.of(OFFICE)
            generation = feed.generation
            store.tasks.update(ids[0], TaskStatus.DONE, AT)  # unsaid while nobody listened
            publisher.notify(topology.CHANGES_EXCHANGE, RESYNC)
            publisher.wait()
            assert not publisher.unheard(), "the feed's queue took it"
            wait_for(lambda: feed.generation > generation, 20, "the resync")
            wait_for(lambda: _status(snapshots, ids[0]) is TaskStatus.DONE, 20, "a whole read")
        finally:
            feed.close()
    finally:
        conn.close()
