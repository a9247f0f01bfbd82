"""One office plays the attacker against another, with the broker logins office-user.sh makes.

Office A holds its connector's credentials and tries to finish or fail office B's task:
through the control, dead-letter and retry exchanges (the broker refuses), through the
events exchange with B's routing key (refused by the topic permission), with someone
else's `user_id` (406), and with what the broker lets through but the dispatcher must not
believe: a forged `x-death`, B's task named under A's own key, and an event for B sent by
a login that is not B's connector. B's task stays queued, nothing is created, and B's own
connector then runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from broker import topology
from broker.admin import with_vhost
from broker.messages import Envelope, MessageType, encode, utcnow
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import JOURNALS, PERIODS, VAT_CODES, company_code
from store import Store
from tests.e2e.helpers import client_for, package_with, process_log, submit_bookings
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
RABBITMQCTL = "bash deploy/local/services.sh rabbitmqctl"
PASSWORD = "attacker-test-secret"
EVENTS = topology.EVENTS_EXCHANGE


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        check=False,
        cwd=ROOT,
        env={**os.environ, "RABBITMQCTL": RABBITMQCTL},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def offices(settings: Settings, name: str) -> Iterator[dict[str, str]]:
    """Two offices, each with its connector login on this test's vhost: office -> URL."""
    parts = urllib.parse.urlsplit(settings.amqp_url)
    urls = {}
    try:
        for office in (f"{name}a", f"{name}b"):
            done = _ctl("bash", "deploy/rabbitmq/office-user.sh", office, PASSWORD, name)
            assert done.returncode == 0, done.stderr
            base = f"amqp://connector-{office}:{PASSWORD}@{parts.hostname}:{parts.port or 5672}/"
            urls[office] = with_vhost(base, name)
        yield urls
    finally:
        for office in (f"{name}a", f"{name}b"):
            _ctl(*RABBITMQCTL.split(), "-q", "delete_user", f"connector-{office}")


def _publish(
    url: str,
    exchange: str,
    envelope: Envelope,
    *,
    user_id: str,
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish as the login of `url`, waiting for the broker's confirm."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        props = pika.BasicProperties(
            delivery_mode=2,
            message_id=envelope.id,
            user_id=user_id,
            headers={"office": envelope.office, "dossier": envelope.dossier, **(headers or {})},
        )
        channel.basic_publish(exchange, envelope.routing_key, encode(envelope), props)
    finally:
        if conn.is_open:
            conn.close()


def _refused(url: str, exchange: str, envelope: Envelope, user_id: str) -> tuple[int, str]:
    """The broker's reply code and text when it refuses the publish."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        _publish(url, exchange, envelope, user_id=user_id)
    return caught.value.reply_code, str(caught.value.reply_text)


def _the_broker_refuses(url: str, login: str, other: str, forged: list[Envelope]) -> None:
    """No write on the control side, no other office's keys, no other login's `user_id`.

    The last of `forged` has the attacker's own key, the others the victim's.
    """
    retry = topology.retry_exchange(Settings().retry_delays[0])
    for event in forged:
        for exchange in (
            topology.PARTITIONS_EXCHANGE,
            topology.CONTROL_EXCHANGE,
            topology.DEAD_EXCHANGE,
            retry,
        ):
            code, text = _refused(url, exchange, event, login)
            assert code == 403 and "ACCESS_REFUSED" in text, exchange
        if event is not forged[-1]:
            code, text = _refused(url, topology.EVENTS_EXCHANGE, event, login)
            assert code == 403 and "topic" in text
    code, text = _refused(url, topology.EVENTS_EXCHANGE, forged[-1], other)
    assert code == 406 and "user_id" in text


def _dropped(cluster: Cluster) -> list[dict[str, Any]]:
    lines = process_log(cluster, "dispatcher").splitlines()
    found = [json.loads(line) for line in lines if '"control.dropped"' in line]
    return [entry for entry in found if entry.get("event") == "control.dropped"]


def test_an_office_cannot_finish_or_fail_another_office_task(
    settings: Settings,
    store: Store,
    make_cluster: Callable[..., Cluster],
    offices: dict[str, str],
) -> None:
    a, b = offices

    def status(task_id: str) -> TaskStatus | None:
        task = store.tasks.get(task_id)
        return task.status if task is not None else None

    package = package_with(settings.simpackage_path, a, ["d1"])
    package.create_company(company_code(b, "d1"), PERIODS, JOURNALS, VAT_CODES)
    cluster = make_cluster(connector_user_prefix="connector-")
    cluster.start_dispatcher()
    # A's connector starts before A's work queue exists: it waits for the dispatcher's.
    cluster.start("connector-a", "worker", "--office", a, env={"DOSSIERFLOW_AMQP_URL": offices[a]})
    client = client_for(cluster, store)
    (victim,) = submit_bookings(client, b, ["d1"], 1)[(b, "d1")]
    queued = wait_for(
        lambda: (t := store.tasks.get(victim)) and t.status is TaskStatus.QUEUED and t,
        60,
        "B's task queued (B has no connector yet)",
    )
    run, as_a = queued.run, f"connector-{a}"
    forged = {"run": run, "attempt": 1}
    done = Envelope(MessageType.DONE, victim, b, "d1", utcnow(), {**forged, "result": {"x": 1}})
    error = {"code": "period_closed", "message": "A's words", "transient": False}
    failed = Envelope(MessageType.FAILED, victim, b, "d1", utcnow(), {**forged, "error": error})

    own = Envelope(MessageType.DONE, victim, a, "d1", utcnow(), {**forged, "result": {"x": 1}})
    _the_broker_refuses(offices[a], as_a, f"connector-{b}", [done, failed, own])

    # What the broker lets through, and the dispatcher must not believe.
    death = {"reason": "rejected", "queue": topology.work_queue(b), "count": 1}
    dead = Envelope(MessageType.FAILED, victim, a, "d1", utcnow(), {**forged, "error": error})
    _publish(offices[a], EVENTS, dead, user_id=as_a, headers={"x-death": [death]})
    _publish(offices[a], EVENTS, own, user_id=as_a)  # B's task under A's own key
    guest = urllib.parse.unquote(urllib.parse.urlsplit(settings.amqp_url).username or "")
    for event in (done, failed):  # a login that may publish anything, but is not B's connector
        _publish(cluster.amqp_url, EVENTS, event, user_id=guest)

    def why() -> list[str]:
        return [str(entry.get("why", "")) for entry in _dropped(cluster)]

    wait_for(lambda: len(why()) >= 3, 30, f"the forged events dropped (so far {why()})")
    reasons = why()
    assert sum("x-death" in r for r in reasons) == 1, reasons
    assert sum(f"office {b} not sent by its connector login" in r for r in reasons) == 2, reasons
    # Handled after the forgeries in B's partition: they are all behind us.
    (marker,) = submit_bookings(client, b, ["d1"], 1, seed=2)[(b, "d1")]
    wait_for(lambda: status(marker) is TaskStatus.WAITING, 30, "B's second task accepted")
    still = store.tasks.get(victim)
    assert still is not None and still.status is TaskStatus.QUEUED and still.result is None
    assert store.instructions.find() == []
    assert store.dossiers.get(f"{a}.d1") is None, "a dossier came into being for a forged event"

    # B's own connector runs B's tasks; A's connector runs A's.
    cluster.start("connector-b", "worker", "--office", b, env={"DOSSIERFLOW_AMQP_URL": offices[b]})
    wait_for(lambda: status(marker) is TaskStatus.DONE, 60, "B's tasks done by B's connector")
    finished = store.tasks.get(victim)
    assert finished is not None and finished.status is TaskStatus.DONE
    assert finished.result != {"x": 1}
    assert f":{cluster.pid('connector-b')}/" in (finished.worker or "")
    (mine,) = submit_bookings(client, a, ["d1"], 1, seed=3)[(a, "d1")]
    wait_for(lambda: status(mine) is TaskStatus.DONE, 60, "A's own task done")
    client.close()
    assert store.instructions.find() == []
