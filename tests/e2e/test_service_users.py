"""The dispatcher and the API on their own logins (deploy/rabbitmq/service-user.sh).

Each login is made by the script in this test's virtual host, under a name of this test's
own, and deleted afterwards. A dispatcher on the dispatcher login declares the topology,
sweeps (passive declares, the management API) and sequences; the API's code paths (the
client that stores and announces, the page's change feed, then the `dossierflow api`
process over HTTP) run on the api login, and a connector of an office login runs the
tasks. Then each login is shown the doors it must find shut.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx2 as httpx
import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from broker import topology
from broker.admin import Admin, with_vhost
from broker.errors import AdminError
from broker.messages import Envelope, MessageType, encode, utcnow
from dispatcher.api.changes import ChangeFeed
from dispatcher.client import Client
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import booking, company_code
from store import OfficeRecord, Role, Store, UserRecord
from tests.e2e.helpers import package_with, process_log, submit_bookings
from tests.integration.live_api import serve
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
RABBITMQCTL = "bash deploy/local/services.sh rabbitmqctl"
PASSWORD = "service-users-test-secret"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        check=False,
        cwd=ROOT,
        env={**os.environ, "RABBITMQCTL": RABBITMQCTL, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass(frozen=True)
class Logins:
    office: str
    dispatcher: str  # login names
    api: str
    dispatcher_url: str  # AMQP URLs in this test's vhost
    api_url: str
    connector_url: str
    dispatcher_admin: str  # management API URLs
    api_admin: str


@pytest.fixture
def logins(settings: Settings, name: str) -> Iterator[Logins]:
    amqp = urllib.parse.urlsplit(settings.amqp_url)
    http = urllib.parse.urlsplit(settings.rabbitmq_api)
    office = f"{name}o"
    made = {"dispatcher": f"{name}-dispatcher", "api": f"{name}-api"}

    def url(login: str) -> str:
        return with_vhost(f"amqp://{login}:{PASSWORD}@{amqp.hostname}:{amqp.port or 5672}/", name)

    def api(login: str) -> str:
        return f"http://{login}:{PASSWORD}@{http.hostname}:{http.port or 15672}/api"

    try:
        for role, login in made.items():
            for _ in range(2):  # idempotent: the second run updates the same login
                done = _run(
                    "bash", "deploy/rabbitmq/service-user.sh", role, PASSWORD, name,
                    env={"LOGIN": login},
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
            assert login in done.stdout and name in done.stdout
        done = _run("bash", "deploy/rabbitmq/office-user.sh", office, PASSWORD, name)
        assert done.returncode == 0, done.stderr
        yield Logins(
            office,
            made["dispatcher"],
            made["api"],
            url(made["dispatcher"]),
            url(made["api"]),
            url(f"connector-{office}"),
            api(made["dispatcher"]),
            api(made["api"]),
        )
    finally:
        for login in (*made.values(), f"connector-{office}"):
            _run(*RABBITMQCTL.split(), "-q", "delete_user", login)


def test_bad_arguments_are_refused() -> None:
    assert _run("bash", "deploy/rabbitmq/service-user.sh", "worker", "pw").returncode == 2
    done = _run("bash", "deploy/rabbitmq/service-user.sh", "api", "pw", env={"LOGIN": "guest"})
    assert done.returncode == 2 and "guest" in done.stderr
    done = _run("bash", "deploy/rabbitmq/service-user.sh", "api", "pw", env={"LOGIN": "a b"})
    assert done.returncode == 2 and "bad login" in done.stderr


def _refused(url: str, action: Callable[[BlockingChannel], object], code: int = 403) -> str:
    """What the broker said when it closed the channel on `action` (its code must be `code`)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            action(channel)
        assert caught.value.reply_code == code, caught.value
        return str(caught.value.reply_text)
    finally:
        if conn.is_open:
            conn.close()


def _publisher(exchange: str, key: str, user_id: str) -> Callable[[BlockingChannel], object]:
    env = Envelope(MessageType.DONE, "t-forged", "o", "d", utcnow(), {"run": 1, "result": {}})
    props = pika.BasicProperties(delivery_mode=2, user_id=user_id, message_id=env.id)
    return lambda ch: ch.basic_publish(exchange, key, encode(env), props)


def test_dispatcher_and_api_logins_run_a_task_and_nothing_more(
    settings: Settings,
    store: Store,
    make_cluster: Callable[..., Cluster],
    logins: Logins,
    tmp_path: Path,
) -> None:
    name = settings.mongo_db  # this test's virtual host and database (conftest)
    office = logins.office
    package_with(settings.simpackage_path, office, ["d1"])
    cluster = make_cluster(
        connector_user_prefix="connector-", command_publishers=logins.api, sweep_grace_s=2.0
    )
    cluster.start(
        "dispatcher",
        "dispatcher",
        env={
            "DOSSIERFLOW_AMQP_URL": logins.dispatcher_url,
            "DOSSIERFLOW_RABBITMQ_API": logins.dispatcher_admin,
        },
    )
    cluster.start(
        "connector",
        "worker",
        "--office",
        office,
        env={"DOSSIERFLOW_AMQP_URL": logins.connector_url},
    )
    partition = topology.partition_queue(0)
    probe = Admin(settings.rabbitmq_api)  # the test's own (guest) view of the vhost
    wait_for(
        lambda: (probe.queue_if_any(name, partition) or {}).get("consumers", 0) > 0,
        60,
        "the dispatcher consuming the partitions it declared on its own login",
    )

    # The API's code paths on the api login: the page's change feed and the client.
    feed = ChangeFeed(logins.api_url, name=f"{name}-feed").start(wait_s=20)
    client = Client.connect(replace(settings, amqp_url=logins.api_url), store)
    try:
        assert feed.live, "the change feed could not bind on the api login"
        (task_id,) = submit_bookings(client, office, ["d1"], 1)[(office, "d1")]

        def status() -> TaskStatus | None:
            task = store.tasks.get(task_id)
            return task.status if task is not None else None

        wait_for(lambda: status() is TaskStatus.DONE, 90, f"the task done (now {status()})")
        task = store.tasks.get(task_id)
        assert task is not None and f":{cluster.pid('connector')}/" in (task.worker or "")
        wait_for(lambda: task_id in feed.take(office).tasks, 20, "a change notice for the task")
    finally:
        client.close()
        feed.close()

    # The real `dossierflow api` process on the api login: a task submitted over HTTP runs.
    store.offices.save(OfficeRecord(office, "Office"))
    user = UserRecord(f"u-{name}", office, Role.PLATFORM)
    store.users.save(user)
    token = store.tokens.issue(user.id)
    payload = booking(company_code(office, "d1"), "http-1", random.Random(7))
    body = {"dossier": "d1", "kind": "booking_proposal.process", "payload": payload}
    with serve(replace(settings, amqp_url=logins.api_url), tmp_path / "api.log") as (base, _):
        answer = httpx.post(
            f"{base}/v1/tasks", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert answer.status_code == 201, answer.text
        over_http = str(answer.json()["id"])
        wait_for(
            lambda: (t := store.tasks.get(over_http)) is not None and t.status is TaskStatus.DONE,
            90,
            "the task submitted over HTTP done",
        )

    # The sweeper reads queue figures from the management API on the dispatcher login
    # (`management` tag), and sweeps with passive declares: no refusal was logged.
    mine = Admin(logins.dispatcher_admin)
    wait_for(  # the broker refreshes the figures every few seconds
        lambda: isinstance(
            (mine.queue_if_any(name, topology.work_queue(office)) or {}).get(
                "messages_unacknowledged"
            ),
            int,
        ),
        30,
        "the work queue's unacknowledged count on the dispatcher's management login",
    )
    with pytest.raises(AdminError):  # but it is no administrator
        mine.create_vhost(f"{name}x", logins.dispatcher)
    with pytest.raises(AdminError):  # and the api login has no management access at all
        Admin(logins.api_admin).queue_if_any(name, partition)
    # It swept every second meanwhile (partition depths by passive declare on its login):
    # a refused sweep would have logged sweeper.failed.
    log = process_log(cluster, "dispatcher")
    for line in log.splitlines():
        event = json.loads(line).get("event", "") if line.startswith("{") else ""
        assert event not in ("sweeper.failed", "sweeper.no_queue_figures"), line
    assert "ACCESS_REFUSED" not in log and "control.dropped" not in log

    _api_refused(logins, settings)
    _dispatcher_refused(logins, name)


def _api_refused(logins: Logins, settings: Settings) -> None:
    """The api login publishes commands to the partitions exchange and nothing else."""
    api, office = logins.api_url, logins.office
    partition = topology.partition_queue(0)
    work_key = f"{office}.d1"
    for exchange in (
        topology.CONTROL_EXCHANGE,  # the hash route of earlier versions
        topology.WORK_EXCHANGE,  # no work for a connector behind the dispatcher's back
        topology.EVENTS_EXCHANGE,  # no connector's events
        topology.DEAD_EXCHANGE,
        topology.retry_exchange(settings.retry_delays[0]),
        topology.CHANGES_EXCHANGE,  # no false notices to the pages
        "",  # nothing straight into a queue through the default exchange
    ):
        key = partition if exchange == "" else work_key
        text = _refused(api, _publisher(exchange, key, logins.api))
        assert "ACCESS_REFUSED" in text, exchange
    # It consumes no partition, work or retry queue, and declares or deletes nothing.
    for queue in (partition, topology.work_queue(office), topology.PARKED_QUEUE):
        assert "ACCESS_REFUSED" in _refused(api, lambda ch, q=queue: ch.basic_get(q))
    assert "ACCESS_REFUSED" in _refused(api, lambda ch: ch.queue_delete(partition))
    assert "ACCESS_REFUSED" in _refused(
        api, lambda ch: ch.exchange_delete(topology.PARTITIONS_EXCHANGE)
    )
    assert "ACCESS_REFUSED" in _refused(
        api, lambda ch: ch.queue_declare("dossierflow.control.p99", durable=True)
    )
    # A command with a connector's user_id: RabbitMQ refuses the forgery itself.
    text = _refused(
        api, _publisher(topology.PARTITIONS_EXCHANGE, work_key, f"connector-{office}"), code=406
    )
    assert "user_id" in text


def _dispatcher_refused(logins: Logins, name: str) -> None:
    dispatcher, office = logins.dispatcher_url, logins.office
    work_key = f"{office}.d1"
    # The dispatcher login never speaks for a connector: no write on the events exchange,
    # and no connector's user_id where it may write; nothing through the default exchange;
    # nothing outside dossierflow's names.
    text = _refused(dispatcher, _publisher(topology.EVENTS_EXCHANGE, work_key, logins.dispatcher))
    assert "ACCESS_REFUSED" in text
    text = _refused(
        dispatcher, _publisher(topology.PARTITIONS_EXCHANGE, work_key, f"connector-{office}"), 406
    )
    assert "user_id" in text
    text = _refused(dispatcher, _publisher("", topology.work_queue(office), logins.dispatcher))
    assert "ACCESS_REFUSED" in text
    assert "ACCESS_REFUSED" in _refused(
        dispatcher, lambda ch: ch.queue_declare(f"{name}.elsewhere", durable=True)
    )
