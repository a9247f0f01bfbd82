"""Submit in bulk over HTTP: one result per item, in order, each with its own idempotency key."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dispatcher.client import Submission, SubmitResult
from dispatcher.errors import NotAnnounced
from dossierflow.settings import Settings
from store import Store
from tests.integration.test_api_access import seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PROBLEM = "application/problem+json"
URL = "/v1/task-batches"


def activate(dossier: str, code: str = "c1", key: str | None = None) -> dict[str, Any]:
    """A batch item activating a dossier."""
    item: dict[str, Any] = {
        "dossier": dossier,
        "kind": "dossier.activate",
        "payload": {"dossier_code": code},
    }
    if key is not None:
        item["idempotency_key"] = key
    return item


SYNC = {"dossier": "d9", "kind": "dossier.sync", "payload": {"dossier_code": "c9"}}


@pytest.fixture
def http(settings: Settings, store: Store) -> Iterator[TestClient]:
    """The app with an admin's token in every request."""
    app = create_app(settings, store, action_wait_s=0.0)
    tokens = seed(store)
    with TestClient(app, headers={"Authorization": f"Bearer {tokens['admin']}"}) as client:
        client.tokens = tokens  # type: ignore[attr-defined]
        yield client
    app.state.service.clients.close()


def test_each_item_gets_its_own_result_in_order(http: TestClient, store: Store) -> None:
    items = [
        activate("b1"),
        SYNC,
        SYNC,  # equal to the sync before it, which still waits: it joins that one
        activate("b2", key="b-2"),
    ]
    answer = http.post(URL, json={"items": items})
    assert answer.status_code == 200, answer.text
    results = answer.json()["items"]
    assert [r["status"] for r in results] == [201, 201, 200, 201]
    assert results[2]["task_id"] == results[1]["task_id"]
    assert all(r["problem"] is None for r in results)
    stored = store.tasks.get(results[0]["task_id"])
    assert stored is not None
    assert (stored.office, stored.dossier, stored.kind) == ("office1", "b1", "dossier.activate")


def test_an_item_against_its_kinds_schema_refuses_the_whole_batch(
    http: TestClient, store: Store
) -> None:
    items = [
        activate("s1", key="s-1"),
        {**activate("s2"), "payload": {"dossier_code": "no spaces"}},
        {**activate("s3"), "kind": "coffee.make"},
    ]
    answer = http.post(URL, json={"items": items})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"] == "/problems/invalid-payload"
    assert "items.1: " in problem["detail"]
    assert "items.2: " in problem["detail"]
    assert store.tasks.find(dossier="s1", statuses=None) == []
    # Nothing was reserved either: the corrected batch goes through with the same key.
    fixed = http.post(URL, json={"items": items[:1]}).json()["items"]
    assert fixed[0]["status"] == 201


def test_a_retried_batch_returns_the_same_tasks_and_a_reused_key_is_refused(
    http: TestClient, store: Store
) -> None:
    items = [activate("k1", key="n-1"), activate("k2", key="n-2"), activate("k3")]
    first = http.post(URL, json={"items": items}).json()["items"]
    again = http.post(URL, json={"items": items}).json()["items"]
    assert [r["status"] for r in first] == [201, 201, 201]
    assert [r["status"] for r in again] == [200, 200, 201]  # the unkeyed item is new again
    assert [r["task_id"] for r in again[:2]] == [r["task_id"] for r in first[:2]]
    other = http.post(URL, json={"items": [activate("k9", key="n-1")]}).json()["items"]
    assert other[0]["status"] == 409
    assert other[0]["problem"]["type"] == "/problems/idempotency-key-reused"
    # The single submit shares the keys: its header finds the batch item's task.
    single = http.post("/v1/tasks", json=activate("k2"), headers={"Idempotency-Key": "n-2"})
    assert (single.status_code, single.json()["id"]) == (200, first[1]["task_id"])
    assert len(store.tasks.find(dossier="k1", statuses=None)) == 1


def test_a_key_repeated_within_a_batch_names_one_task(http: TestClient) -> None:
    items = [activate("r1", key="same"), activate("r1", key="same"), activate("r2", key="same")]
    results = http.post(URL, json={"items": items}).json()["items"]
    assert [r["status"] for r in results] == [201, 200, 409]
    assert results[1]["task_id"] == results[0]["task_id"]


class Refusing:
    """A client that refuses every item for a reason the schema cannot state."""

    def submit_many(self, items: Sequence[Submission]) -> list[SubmitResult]:
        """Refuse each item."""
        return [SubmitResult(None, "payload is over the limit", False) for _ in items]

    def close(self) -> None:
        """Nothing to close."""


def test_an_item_the_client_refuses_is_its_own_problem_and_frees_its_key(
    settings: Settings, store: Store
) -> None:
    app = create_app(settings, store, client_factory=Refusing)  # type: ignore[arg-type]
    token = seed(store)["admin"]
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        item = activate("f1", key="fix-me")
        result = http.post(URL, json={"items": [item]}).json()["items"][0]
        assert (result["status"], result["task_id"]) == (422, None)
        assert result["problem"]["type"] == "/problems/invalid-payload"
        assert result["problem"]["detail"] == "payload is over the limit"
    app.state.service.clients.close()
    app = create_app(settings, store)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.post(URL, json={"items": [item]}).json()["items"][0]["status"] == 201
    app.state.service.clients.close()


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        ({"items": []}, 422, "invalid-request"),
        ({"items": [activate("x")] * 1001}, 422, "invalid-request"),
        ({"items": [{**activate("x"), "office": "office2"}]}, 422, "invalid-request"),
        ({"items": [activate("../x")]}, 422, "invalid-request"),
        ({"items": [activate("x", key="no spaces")]}, 422, "invalid-request"),
        ({"items": [activate("x", code="c" * 300)] * 1000 * 30}, 413, "payload-too-large"),
    ],
)
def test_a_malformed_batch_is_one_problem_and_stores_nothing(
    http: TestClient, store: Store, body: dict[str, Any], status: int, slug: str
) -> None:
    before = len(store.tasks.find(statuses=None))
    answer = http.post(URL, json=body)
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"] == f"/problems/{slug}"
    assert len(store.tasks.find(statuses=None)) == before


def test_only_submitting_roles_send_batches(http: TestClient) -> None:
    tokens = http.tokens  # type: ignore[attr-defined]
    for role, status in (("manager-d1", 403), ("support", 403), ("platform", 200)):
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        answer = http.post(URL, json={"items": [activate("p1")]}, headers=headers)
        assert answer.status_code == status, (role, answer.text)


def test_a_batch_of_a_thousand_is_accepted_in_one_request(http: TestClient) -> None:
    items = [activate(f"m{n:04d}") for n in range(1000)]
    started = time.monotonic()
    answer = http.post(URL, json={"items": items})
    elapsed = time.monotonic() - started
    print(f"\n1000 tasks in one batch: {elapsed:.2f} s ({1000 / elapsed:.0f} tasks/s)")
    assert answer.status_code == 200
    results = answer.json()["items"]
    assert [r["status"] for r in results] == [201] * 1000
    assert len({r["task_id"] for r in results}) == 1000


class Unannounced:
    """A client whose broker never confirms: the tasks are stored (here: only named)."""

    def __init__(self, merge_first: bool = False) -> None:
        self.merge_first = merge_first

    def submit_many(self, items: Sequence[Submission]) -> list[SubmitResult]:
        """Raise NotAnnounced as the real client does after storing."""
        count = len(items) - (1 if self.merge_first else 0)
        ids = [f"stored-{n}" for n in range(count)]
        raise NotAnnounced(ids[0], ids)

    def close(self) -> None:
        """Nothing to close."""


def test_stored_but_unannounced_items_are_answered_as_submitted(
    settings: Settings, store: Store
) -> None:
    app = create_app(settings, store, client_factory=Unannounced)  # type: ignore[arg-type]
    token = seed(store)["admin"]
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        items = [activate("u1", key="u-1"), activate("u2")]
        results = http.post(URL, json={"items": items}).json()["items"]
        assert [(r["status"], r["task_id"]) for r in results] == [
            (201, "stored-0"),
            (201, "stored-1"),
        ]
        again = http.post(URL, json={"items": items[:1]}).json()["items"]
        assert (again[0]["status"], again[0]["task_id"]) == (200, "stored-0")


def test_when_stored_items_cannot_be_matched_their_keys_stay_taken(
    settings: Settings, store: Store
) -> None:
    unmatched = lambda: Unannounced(merge_first=True)  # noqa: E731
    app = create_app(settings, store, client_factory=unmatched)  # type: ignore[arg-type]
    token = seed(store)["admin"]
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        items = [activate("v1", key="v-1"), activate("v2", key="v-2")]
        answer = http.post(URL, json={"items": items})
        assert answer.status_code == 503
        assert answer.json()["type"] == "/problems/unavailable"
        retry = http.post(URL, json={"items": items}).json()["items"]
        assert [r["status"] for r in retry] == [409, 409]  # never stored twice
