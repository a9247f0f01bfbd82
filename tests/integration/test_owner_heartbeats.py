"""A partition owner keeps its broker connection through a store step longer than the
heartbeat timeout (real RabbitMQ, real store)."""

from __future__ import annotations

import time

import pytest

from broker import topology
from broker.errors import BrokerError
from broker.rabbitmq import Connection
from dispatcher.owner import Owner, OwnerConfig
from dossierflow.settings import Settings
from store import Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

HEARTBEAT_S = 2


def _alive(conn: Connection) -> bool:
    try:
        conn.channel(confirm=False).depth(topology.partition_queue(0))
    except BrokerError:
        return False
    return conn.is_open


def test_a_slow_store_step_does_not_cost_the_owner_its_connection(
    settings: Settings, store: Store
) -> None:
    """In the 10,000-task chaos run a takeover batch read for minutes: the broker closed
    the owner's connection for missed heartbeats, the standby took the partition, met
    the same read and lost it in turn, and no batch got through."""
    topo = topology.Topology(partitions=1)
    slow = 4 * HEARTBEAT_S + 1  # RabbitMQ gives up after two missed heartbeats

    # The fault first: a thread that does not pump loses the connection.
    conn = Connection.open(settings.amqp_url, name="test-no-pump", heartbeat=HEARTBEAT_S)
    conn.channel(confirm=False).declare_control(topo)
    time.sleep(slow)
    assert not _alive(conn), "the broker kept a connection that sent no heartbeats"
    conn.close()

    conn = Connection.open(settings.amqp_url, name="test-owner", heartbeat=HEARTBEAT_S)
    try:
        owner = Owner(store, conn, topo, topo.partition_queues(), OwnerConfig(name="test"))

        def step() -> int:
            time.sleep(slow)
            return 42

        assert owner._pumped(step) == 42
        assert _alive(conn), "the owner lost its connection during a slow store step"
        with pytest.raises(ZeroDivisionError):  # the step's error reaches the owner
            owner._pumped(lambda: 1 // 0)
    finally:
        conn.close()
