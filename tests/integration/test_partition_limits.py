"""A full control partition refuses publishes, and whoever published hears of it.

The partitions carry a byte limit with `reject-publish` (broker/topology.py). With the
dispatcher away, submissions fill the one partition of this test until the broker nacks:
the client raises Overloaded (the task is stored), the API answers 503 with Retry-After
and completes the idempotency key; once a dispatcher runs, the sweeper announces what was
refused and every task runs. Either reading of the limit passes (a quorum queue checks it
before it takes a message and may end one message over it; a classic queue refuses the
message that would cross it), and nothing else is relied on.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from dataclasses import replace

import httpx2
import pytest

from broker import topology
from broker.admin import Admin
from dispatcher.client import Client
from dispatcher.errors import Overloaded
from dossierflow.settings import Settings
from dossierflow.tools.apidemo import serve_for_demo
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import booking, company_code
from store import Role, Store, UserRecord
from tests.e2e.helpers import package_with
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OFFICE = "office1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_full_partition_refuses_and_the_refused_tasks_still_run(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    limited = replace(settings, partitions=1, partition_max_bytes=settings.message_limit_bytes)
    limited.validate()
    dossiers = [f"d{i}" for i in range(3)]
    package_with(limited.simpackage_path, OFFICE, dossiers)
    cluster = make_cluster(partitions=1, partition_max_bytes=limited.partition_max_bytes)
    client = Client.connect(replace(limited, amqp_url=cluster.amqp_url), store)
    rng = random.Random(7)
    accepted: list[str] = []
    refused: Overloaded | None = None
    for i in range(5000):  # about 1 KiB each: the partition is full long before
        dossier = dossiers[i % len(dossiers)]
        payload = booking(company_code(OFFICE, dossier), f"fill-{i:05d}", rng)
        try:
            accepted.append(client.submit(OFFICE, dossier, "booking_proposal.process", payload))
        except Overloaded as exc:
            refused = exc
            break
    assert refused is not None, "5000 submissions and the partition never refused one"
    admin, partition = Admin(limited.rabbitmq_api), topology.partition_queue(0)
    # The broker refreshes its queue figures every 5 s: wait for those with every command.
    held = wait_for(
        lambda: (
            (q := admin.queue(limited.mongo_db, partition))
            and int(q.get("messages", 0)) == len(accepted)
            and "message_bytes" in q
            and q
        ),
        30,
        f"{len(accepted)} commands in the partition's figures",
        every=0.5,
    )
    print(f"\npartition full after {len(accepted)} commands, {held.get('message_bytes')} bytes")
    # Ready bytes at most the limit plus one message, whichever reading the broker has.
    assert int(held["message_bytes"]) <= limited.partition_max_bytes + limited.message_limit_bytes
    task = store.tasks.get(refused.task_id)
    assert task is not None and task.status is TaskStatus.SUBMITTED, "stored all the same"
    client.close()

    # Over HTTP: 503 with Retry-After, saying the task is stored; the key keeps it.
    store.users.save(UserRecord("platform", OFFICE, Role.PLATFORM))
    token = store.tokens.issue("platform")
    url, _admin, stop = serve_for_demo(
        replace(limited, amqp_url=cluster.amqp_url), limited.mongo_db, _free_port()
    )
    try:
        with httpx2.Client(base_url=url, timeout=30) as http:
            body = {
                "dossier": "d0",
                "kind": "dossier.sync",
                "payload": {"dossier_code": company_code(OFFICE, "d0")},
            }
            auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": "busy-1"}
            busy = http.post("/v1/tasks", json=body, headers=auth)
            assert busy.status_code == 503, busy.text
            assert busy.headers["content-type"].startswith("application/problem+json")
            assert int(busy.headers["retry-after"]) > 0
            assert "do not submit it again" in busy.json()["detail"]
            again = http.post("/v1/tasks", json=body, headers=auth)
            assert again.status_code == 200, again.text
            from_http = str(again.json()["id"])
            assert from_http in busy.json()["detail"]
    finally:
        stop()

    # A dispatcher and a connector: everything runs, the refused ones announced by the sweeper.
    cluster.start_dispatcher()
    cluster.start_worker(OFFICE, "worker-0")
    everything = [*accepted, refused.task_id, from_http]
    wait_for(
        lambda: all((t := store.tasks.get(i)) and t.status is TaskStatus.DONE for i in everything),
        240,
        f"{len(everything)} tasks done",
        every=0.5,
    )
