"""The AMQP adapter against the real RabbitMQ."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from broker import topology
from broker.errors import Unroutable
from broker.messages import Envelope, MessageType, utcnow
from broker.rabbitmq import Connection
from dossierflow.settings import Settings
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def conn(settings: Settings) -> Iterator[Connection]:
    connection = Connection.open(settings.amqp_url, name="test")
    yield connection
    connection.close()


def _run(office: str, dossier: str) -> Envelope:
    return Envelope(MessageType.RUN, "t1", office, dossier, at=utcnow(), data={"kind": "x"})


def test_a_publish_no_queue_takes_raises_unroutable(conn: Connection) -> None:
    channel = conn.channel(confirm=True)
    channel.declare_control(topology.Topology(partitions=2))
    with pytest.raises(Unroutable):
        channel.publish(topology.WORK_EXCHANGE, _run("office-without-queue", "d1"))


def test_every_message_of_a_dossier_lands_in_its_partition_before_and_after_a_broker_restart(
    settings: Settings,
) -> None:
    """The regression test of the chaos run's `rabbitmq-restart` finding (issue 9).

    The consistent-hash exchange rebuilt its ring when the broker application restarted,
    and a dossier could come back on another partition, where a second owner numbered its
    tasks. The partitions exchange routes by a header the publisher computes, so the same
    dossiers land on the same partitions after a restart.
    """
    from broker.admin import Admin
    from dossierflow.tools.chaosfaults import Services

    topo = topology.Topology(partitions=4)
    keys = [("o1", f"d{n}") for n in range(8)]
    expected = Counter(topology.partition_of(f"{o}.{d}", 4) for o, d in keys)
    admin = Admin(settings.rabbitmq_api)

    def depths() -> list[int]:
        return [
            admin.queue(settings.mongo_db, q).get("messages", 0) for q in topo.partition_queues()
        ]

    def publish_all(rounds: int) -> None:
        conn = Connection.open(settings.amqp_url, name="test-partitions")
        try:
            channel = conn.channel(confirm=True)
            channel.declare_control(topo)
            for i, (office, dossier) in enumerate(keys):
                env = Envelope(MessageType.SUBMITTED, f"t{i}", office, dossier, at=utcnow())
                channel.publish(topology.PARTITIONS_EXCHANGE, env, topo.route(env.routing_key))
        finally:
            conn.close()
        want = [expected[p] * rounds for p in range(4)]
        wait_for(lambda: depths() == want, 30, f"partition depths {want}")

    publish_all(1)
    services = Services(settings)
    if not services.controls_settings():
        pytest.skip("the broker is not one deploy/local/services.sh runs: no restart")
    services.rabbitmqctl("stop_app")
    services.rabbitmqctl("start_app")
    wait_for(lambda: _answers(settings.amqp_url), 60, "the broker to take connections again")
    publish_all(2)


def _answers(url: str) -> bool:
    try:
        Connection.open(url, name="test-probe").close()
    except Exception:
        return False
    return True


def test_a_message_without_the_partition_header_still_reaches_a_partition(
    conn: Connection, settings: Settings
) -> None:
    """One published by an earlier version: the control exchange's hash takes it."""
    from broker.admin import Admin

    topo = topology.Topology(partitions=4)
    channel = conn.channel(confirm=True)
    channel.declare_control(topo)
    channel.publish(
        topology.PARTITIONS_EXCHANGE, Envelope(MessageType.SUBMITTED, "t1", "o1", "d1", at=utcnow())
    )
    admin = Admin(settings.rabbitmq_api)

    def queued() -> int:
        return sum(
            admin.queue(settings.mongo_db, q).get("messages", 0) for q in topo.partition_queues()
        )

    wait_for(lambda: queued() == 1, 20, "the message in one partition")
