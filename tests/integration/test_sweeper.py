"""The sweeper republishes a stored task's command, backing off so a backlog is not fed."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from broker.messages import utcnow
from broker.rabbitmq import Connection
from dispatcher.service import Dispatcher
from dossierflow.settings import Settings
from store import Store, TaskRecord
from store.sequencing import BatchWrite
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_sweeper_republishes_a_stale_task_then_backs_off(settings: Settings, store: Store) -> None:
    settings = replace(settings, sweep_grace_s=1.0)
    store.tasks.insert(
        TaskRecord(
            id="stale0001",
            office="o1",
            dossier="d1",
            kind="dossier.sync",
            payload={"dossier_code": "c"},
            status=TaskStatus.SUBMITTED,
            submitted_at=utcnow() - timedelta(seconds=5),
        )
    )
    conn = Connection.open(settings.amqp_url, name="test-sweeper")
    try:
        channel = conn.channel(confirm=True)
        channel.declare_control(settings.topology())
        dispatcher = Dispatcher(settings, store, threading.Event())
        dispatcher._publish_ch = channel  # what run() sets up before sweeping

        assert dispatcher.sweep() == 1
        assert _drain(conn, settings) == 1  # what a partition owner does with the command
        assert dispatcher.sweep() == 0, "republished again before its back-off ran out"
        assert wait_for(dispatcher.sweep, 5, "the republish after twice the grace")
        # While the republished command still waits in its partition, nothing more is sent.
        assert dispatcher.sweep() == 0 and dispatcher.sweep() == 0
        assert _drain(conn, settings) == 1
        store.tasks.update("stale0001", TaskStatus.WAITING, utcnow())
        assert dispatcher.sweep() == 0

        # A delayed retry whose timer was lost (retry queues dead-letter at most once).
        due = utcnow() - timedelta(seconds=5)
        store.tasks.update(
            "stale0001", TaskStatus.RETRY_WAIT, utcnow(), {"retries": 1, "next_attempt_at": due}
        )
        store.sequencing.write(BatchWrite(timers=[("stale0001", 1, 0, due)]))
        assert dispatcher.sweep() == 1
    finally:
        conn.close()


def _drain(conn: Connection, settings: Settings) -> int:
    """Consume and acknowledge whatever waits in the control partitions; how many."""
    drained = 0
    for queue in settings.topology().partition_queues():
        channel = conn.channel(confirm=False)
        for delivery in channel.deliveries(queue, prefetch=100, idle_seconds=0.05):
            if delivery is None:
                break
            channel.ack(delivery.delivery_tag)
            drained += 1
        channel.stop_consuming()
    return drained
