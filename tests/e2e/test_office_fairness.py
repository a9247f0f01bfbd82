"""No office starves another: a burst of one office does not hold up another office's task.

Real processes (`dossierflow dispatcher`, `worker`, `api`) on the real services, tasks
submitted over HTTP with each office's platform token, as a platform would.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
import pytest

from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import booking
from store import OfficeRecord, Role, Store, UserRecord
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PROBLEM = "application/problem+json"
A_DOSSIERS = [f"a{n:03d}" for n in range(200)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running(cluster: Cluster, store: Store, offices: list[str]) -> Iterator[httpx.Client]:
    """A dispatcher, a connector per office and the API; an HTTP client of the API.

    Its `tokens` map each office to the token of its platform service.
    """
    tokens = {}
    for office in offices:
        store.offices.save(OfficeRecord(office, office))
        store.users.save(UserRecord(f"platform-{office}", office, Role.PLATFORM))
        tokens[office] = store.tokens.issue(f"platform-{office}")
    cluster.start_dispatcher()
    for office in offices:
        cluster.start_worker(office, f"worker-{office}", adapter="noop", concurrency=4)
    port = _free_port()
    cluster.start("api", "api", "--host", "127.0.0.1", "--port", str(port))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

        def up() -> bool:
            try:
                return http.get("/openapi.json").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 60, "the API answering")
        http.tokens = tokens  # type: ignore[attr-defined]
        yield http


def items(office: str, count: int, start: int, seed: int) -> list[dict[str, Any]]:
    """`count` booking proposals of `office`, round-robin over its dossiers."""
    rng = random.Random(seed)
    dossiers = A_DOSSIERS if office == "office-a" else ["b1"]
    out = []
    for n in range(start, start + count):
        dossier = dossiers[n % len(dossiers)]
        payload = booking(f"{office}-{dossier}", f"p{n:06d}", rng)
        out.append({"dossier": dossier, "kind": "booking_proposal.process", "payload": payload})
    return out


def post(http: httpx.Client, office: str, batch: list[dict[str, Any]]) -> httpx.Response:
    """Submit a batch as the office's platform service."""
    auth = {"Authorization": f"Bearer {http.tokens[office]}"}  # type: ignore[attr-defined]
    return http.post("/v1/task-batches", json={"items": batch}, headers=auth)


def submitted(answer: httpx.Response) -> list[str]:
    """The ids of the tasks a batch answer says were stored."""
    assert answer.status_code == 200, answer.text
    return [r["task_id"] for r in answer.json()["items"] if r["status"] == 201]


def started(store: Store, task_id: str) -> datetime | None:
    """When the connector started the task (its own clock, this machine's)."""
    task = store.tasks.get(task_id)
    return task.started_at if task is not None else None


def timeline(store: Store, task_id: str, asked: datetime) -> str:
    """Where a task's start delay went: seconds from `asked` to each step."""
    task = store.tasks.get(task_id)
    assert task is not None
    steps = {
        "stored": task.submitted_at,
        "accepted": task.accepted_at,
        "released": task.queued_at,
        "started": task.started_at,
    }
    return ", ".join(
        f"{name} {(at.replace(tzinfo=UTC) - asked).total_seconds():.2f}"
        for name, at in steps.items()
        if at is not None
    )


def test_a_burst_of_20000_from_one_office_does_not_hold_up_another_offices_task(
    store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    cluster = make_cluster()  # the default limits: a burst of 1,000, then 100 a second
    with running(cluster, store, ["office-a", "office-b"]) as http:
        # Office B is in business: its partition, work queue and connector are warm.
        (warm,) = submitted(post(http, "office-b", items("office-b", 1, 0, 1)))
        wait_for(lambda: started(store, warm), 60, "office B's first task started")

        # Office A: 20,000 tasks in batches of 1,000, as fast as it can send them.
        accepted: list[str] = []
        throttled = []
        burst_began = time.monotonic()
        for n in range(20):
            answer = post(http, "office-a", items("office-a", 1000, n * 1000, n))
            if answer.status_code == 429:
                throttled.append(answer)
            else:
                accepted += submitted(answer)
        burst_s = time.monotonic() - burst_began

        # Then office B submits one task.
        asked = datetime.now(UTC)
        (task_id,) = submitted(post(http, "office-b", items("office-b", 1, 1, 2)))
        began = wait_for(lambda: started(store, task_id), 60, "office B's task started")
        delay = (began.replace(tzinfo=UTC) - asked).total_seconds()
        a_open = sum(
            s != TaskStatus.DONE.value for s in store.tasks.statuses(accepted).values()
        )  # read at once: what of A's burst was still to run when B's task had started
        print(
            f"\noffice A: {len(accepted)} tasks accepted, {len(throttled)} batches refused "
            f"(429) in {burst_s:.1f} s; office B's task started {delay:.2f} s after its "
            f"submission ({timeline(store, task_id, asked)}), with {a_open} of office A's "
            "tasks not done yet"
        )

    # A few hundred at once, and more, is accepted whole: the burst is 1,000 tasks.
    assert len(accepted) >= 1000
    assert len(accepted) < 20_000 and throttled
    refused = throttled[0]
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"] == "/problems/too-many-requests"
    assert int(refused.headers["Retry-After"]) >= 1
    assert a_open > 0, "office A's burst had run out before B's task: the test proves nothing"
    assert delay <= 2.0, f"office B's task started {delay:.2f} s after its submission"


def test_an_office_at_its_waiting_cap_is_refused_until_its_tasks_finish(
    store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    cluster = make_cluster(office_waiting_cap=30)
    with running(cluster, store, ["office-b"]) as http:
        cluster.kill("worker-office-b")  # nothing finishes until the connector is back
        assert len(submitted(post(http, "office-b", items("office-b", 30, 0, 1)))) == 30
        over = post(http, "office-b", items("office-b", 1, 30, 2))
        assert over.status_code == 429, over.text
        assert over.headers["content-type"] == PROBLEM
        assert over.json()["type"] == "/problems/too-many-waiting"
        assert over.headers["Retry-After"] == "5"

        cluster.start_worker("office-b", "worker-office-b", adapter="noop")

        def admitted() -> bool:
            return post(http, "office-b", items("office-b", 1, 31, 3)).status_code == 200

        wait_for(admitted, 90, "a submission admitted once the office's tasks finished", 0.5)
