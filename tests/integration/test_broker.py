"""The AMQP adapter against the real RabbitMQ."""

from __future__ import annotations

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


def test_every_message_of_a_dossier_lands_in_one_partition(
    conn: Connection, settings: Settings
) -> None:
    from broker.admin import Admin

    channel = conn.channel(confirm=True)
    topo = topology.Topology(partitions=4)
    channel.declare_control(topo)
    for i in range(20):
        for dossier in ("d1", "d2", "d3"):
            channel.publish(
                topology.CONTROL_EXCHANGE,
                Envelope(MessageType.SUBMITTED, f"t{i}", "o1", dossier, at=utcnow()),
            )
    admin = Admin(settings.rabbitmq_api)

    def depths() -> list[int]:
        return [
            admin.queue(settings.mongo_db, q).get("messages", 0) for q in topo.partition_queues()
        ]

    counts = wait_for(lambda: sum(depths()) == 60 and depths(), 20, "60 messages queued")
    assert sorted(c for c in counts if c) in ([20, 20, 20], [20, 40], [60])
