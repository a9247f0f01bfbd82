"""deploy/rabbitmq/office-user.sh on the real broker: a connector reaches only its office."""

from __future__ import annotations

import functools
import os
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from broker import topology
from broker.admin import with_vhost
from broker.errors import ChannelRefused
from broker.rabbitmq import Connection
from dossierflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RABBITMQCTL = "bash deploy/local/services.sh rabbitmqctl"
OFFICE = "officex"
USER = f"connector-{OFFICE}"
PASSWORD = "officex-secret"


def office_user(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "deploy/rabbitmq/office-user.sh", *args],
        check=False,
        cwd=ROOT,
        env={**os.environ, "RABBITMQCTL": RABBITMQCTL},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def connector_url(settings: Settings) -> Iterator[str]:
    """The topology in this test's vhost, and the office user; the user is deleted after."""
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(settings.amqp_url).path[1:])
    admin = Connection.open(settings.amqp_url, name="admin")
    admin.channel(confirm=True).declare_control(settings.topology())
    admin.close()
    try:
        for _ in range(2):  # idempotent: the second run updates the same user
            done = office_user(OFFICE, PASSWORD, vhost)
            assert done.returncode == 0, done.stderr
        assert USER in done.stdout and vhost in done.stdout
        parts = urllib.parse.urlsplit(settings.amqp_url)
        base = f"amqp://{USER}:{PASSWORD}@{parts.hostname}:{parts.port or 5672}/"
        yield with_vhost(base, vhost)
    finally:
        subprocess.run(
            [*RABBITMQCTL.split(), "-q", "delete_user", USER],
            check=False,
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )


def test_bad_office_is_refused() -> None:
    for bad in ("office 1", "office1$", "office.1", "", "x" * 65):
        done = office_user(bad, "pw")
        assert done.returncode == 2
        assert "bad office id" in done.stderr


def refused(url: str, action: Callable[[BlockingChannel], object]) -> str:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            action(conn.channel())
        assert caught.value.reply_code == 403
        return str(caught.value.reply_text)
    finally:
        conn.close()


def confirmed_publish(channel: BlockingChannel, exchange: str, key: str) -> object:
    channel.confirm_delivery()
    channel.basic_publish(exchange, key, b"{}", pika.BasicProperties(user_id=USER))
    return None


def bind_work(channel: BlockingChannel, queue: str, key: str) -> object:
    return channel.queue_bind(queue, topology.WORK_EXCHANGE, key)


def test_connector_reaches_only_its_office(settings: Settings, connector_url: str) -> None:
    # Declaring the work queue names the dead-letter exchange, which needs write on it:
    # refused, the dispatcher declares it (at the office's first release).
    conn = Connection.open(connector_url, name="connector")
    with pytest.raises(ChannelRefused) as caught:
        conn.channel(confirm=True).declare_work_queue(OFFICE, settings.topology())
    assert caught.value.code == 403 and "dossierflow.dead" in str(caught.value)
    conn.close()
    admin = Connection.open(settings.amqp_url, name="dispatcher")
    queue = admin.channel(confirm=True).declare_work_queue(OFFICE, settings.topology())
    admin.close()
    assert queue == "dossierflow.work.officex"
    plain = pika.BlockingConnection(pika.URLParameters(connector_url))
    channel = plain.channel()
    channel.basic_consume(queue, lambda *_: None)
    channel.confirm_delivery()
    own = pika.BasicProperties(user_id=USER)
    channel.basic_publish(topology.EVENTS_EXCHANGE, "officex.d1", b"{}", own, mandatory=False)
    plain.close()
    # Events only, only under its own office's keys: no command, timer or dead letter.
    for exchange, key in (
        (topology.PARTITIONS_EXCHANGE, "officex.d1"),
        (topology.CONTROL_EXCHANGE, "officex.d1"),
        (topology.DEAD_EXCHANGE, "officex.d1"),
        (topology.retry_exchange(settings.retry_delays[0]), "officex.d1"),
        (topology.EVENTS_EXCHANGE, "officey.d1"),
        (topology.EVENTS_EXCHANGE, "officex1.d1"),
    ):
        publish = functools.partial(confirmed_publish, exchange=exchange, key=key)
        assert "ACCESS_REFUSED" in refused(connector_url, publish), (exchange, key)

    other = "dossierflow.work.officey"
    args = topology.work_arguments(settings.delivery_limit)
    assert "ACCESS_REFUSED" in refused(
        connector_url, lambda c: c.queue_declare(other, durable=True, arguments=args)
    )
    # The other office's queue exists (declared by an admin): still no access.
    admin = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    admin.channel().queue_declare(other, durable=True, arguments=args)
    admin.close()
    assert "ACCESS_REFUSED" in refused(connector_url, lambda c: c.basic_consume(other, print))
    assert "ACCESS_REFUSED" in refused(
        connector_url, lambda c: c.basic_consume(topology.partition_queue(0), print)
    )
    for key in ("officey.*", "#"):
        bind = functools.partial(bind_work, queue=queue, key=key)
        assert "ACCESS_REFUSED" in refused(connector_url, bind)
    assert "ACCESS_REFUSED" in refused(
        connector_url,
        lambda c: c.exchange_bind(topology.CONTROL_EXCHANGE, topology.WORK_EXCHANGE, "#"),
    )
