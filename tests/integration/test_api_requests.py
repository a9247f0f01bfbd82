"""Requests over HTTP: idempotent submits, problem documents, paging, hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from dispatcher.api.app import create_app
from dossierflow.settings import Settings
from store import Store
from tests.integration.test_api_access import failed_task, seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PROBLEM = "application/problem+json"
SYNC = {"dossier": "d1", "kind": "dossier.sync", "payload": {"dossier_code": "c1"}}


@pytest.fixture
def http(settings: Settings, store: Store) -> Iterator[TestClient]:
    """The app with an admin's token in every request."""
    app = create_app(settings, store, action_wait_s=0.0)
    tokens = seed(store)
    with TestClient(app, headers={"Authorization": f"Bearer {tokens['admin']}"}) as client:
        client.tokens = tokens  # type: ignore[attr-defined]
        yield client
    app.state.service.clients.close()


def problem(response: Any, status: int, slug: str) -> None:
    """Assert a problem+json answer of this status and type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == f"/problems/{slug}"


def test_a_retried_submit_with_the_same_idempotency_key_returns_the_same_task(
    http: TestClient, store: Store
) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = http.post("/v1/tasks", json={**SYNC, "kind": "dossier.activate"}, headers=key)
    again = http.post("/v1/tasks", json={**SYNC, "kind": "dossier.activate"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert first.headers["location"] == f"/v1/tasks/{first.json()['id']}"
    assert len(store.tasks.find(dossier="d1", statuses=None)) == 2  # the seeded one and this
    other = http.post("/v1/tasks", json={**SYNC, "dossier": "d2"}, headers=key)
    problem(other, 409, "idempotency-key-reused")


def test_a_submitted_task_reads_back_with_history(http: TestClient) -> None:
    task = http.post("/v1/tasks", json=SYNC).json()
    detail = http.get(f"/v1/tasks/{task['id']}").json()
    assert (detail["office"], detail["dossier"], detail["status"]) == ("office1", "d1", "submitted")
    assert [h["status"] for h in detail["history"]] == ["submitted"]
    seeded = http.get("/v1/tasks/t-office1-d1").json()
    assert seeded["instructions"][0]["severity"] == "orange"
    assert "TYPO" in seeded["instructions"][0]["action"]  # the text, in the user's language


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        ({**SYNC, "office": "office2"}, 422, "invalid-request"),
        ({**SYNC, "extra": 1}, 422, "invalid-request"),
        ({**SYNC, "dossier": {"$gt": ""}}, 422, "invalid-request"),
        ({**SYNC, "dossier": "../d1"}, 422, "invalid-request"),
        ({**SYNC, "kind": "coffee.make"}, 422, "invalid-payload"),
        ({**SYNC, "payload": {"dossier_code": {"$ne": 1}}}, 422, "invalid-payload"),
        ({**SYNC, "payload": {"dossier_code": "c", "x": 1}}, 422, "invalid-payload"),
        ({**SYNC, "payload": {"dossier_code": "c" * 300_000}}, 413, "payload-too-large"),
        ({**SYNC, "payload": {"dossier_code": "c" * 200_000}}, 422, "invalid-payload"),
    ],
)
def test_bad_submissions_are_problems_and_store_nothing(
    http: TestClient, store: Store, body: dict[str, Any], status: int, slug: str
) -> None:
    before = len(store.tasks.find())
    problem(http.post("/v1/tasks", json=body), status, slug)
    assert len(store.tasks.find()) == before


def test_errors_have_stable_problem_types(http: TestClient) -> None:
    problem(http.get("/v1/tasks/nope"), 404, "not-found")
    problem(http.get("/v1/tasks/bad$id"), 422, "invalid-request")
    problem(http.get("/v1/tasks", params={"status": "nope"}), 422, "invalid-request")
    problem(http.get("/v1/tasks", params={"limit": 201}), 422, "invalid-request")
    problem(http.get("/v1/tasks", params={"cursor": "garbage"}), 422, "invalid-request")
    problem(
        http.get("/v1/tasks", params={"dossier[$ne]": "x", "dossier": '{"$ne": 1}'}),
        422,
        "invalid-request",
    )
    problem(http.get("/v1/overview", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    done = http.post("/v1/tasks", json=SYNC).json()["id"]
    problem(http.post(f"/v1/tasks/{done}/restart"), 409, "action-refused")
    support = {"Authorization": f"Bearer {http.tokens['support']}"}  # type: ignore[attr-defined]
    problem(http.get("/v1/overview", headers=support), 422, "office-required")
    assert http.get("/openapi.json").json()["paths"]["/v1/tasks"]["post"]


def test_the_task_list_filters_and_pages_with_a_cursor(http: TestClient, store: Store) -> None:
    for n in range(5):
        failed_task(store, "office1", "d3", f"t-page-{n}", kind="dossier.sync")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, str | int] = {"dossier": "d3", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v1/tasks", params=params).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"t-page-{n}" for n in range(5)]
    assert len(seen) == len(set(seen))
    default = {t["id"] for t in http.get("/v1/tasks").json()["items"]}
    assert default == {"t-office1-d1", "t-office1-d2", *seen}
    http.post("/v1/tasks", json=SYNC)
    assert len(http.get("/v1/tasks", params={"all": "true"}).json()["items"]) == 8
    assert len(http.get("/v1/tasks", params={"status": "submitted"}).json()["items"]) == 1
    assert len(http.get("/v1/tasks", params={"has_instruction": "false"}).json()["items"]) == 1
    assert http.get("/v1/tasks", params={"severity": "red"}).json()["items"] == []
    assert len(http.get("/v1/tasks", params={"kind": "dossier.activate"}).json()["items"]) == 2
    later = http.get("/v1/tasks", params={"submitted_from": "2999-01-01T00:00:00Z"}).json()
    assert later["items"] == []


def test_the_overview_marks_stripes_and_counts(http: TestClient, store: Store) -> None:
    failed_task(store, "office1", "d3", "t-red", kind="dossier.sync", severity="red")
    http.post("/v1/tasks", json={**SYNC, "dossier": "d4"})
    rows = {d["dossier"]: d for d in http.get("/v1/overview").json()["dossiers"]}
    assert {k: v["stripe"] for k, v in rows.items()} == {
        "d1": "orange", "d2": "orange", "d3": "red", "d4": "",
    }  # fmt: skip
    assert (rows["d1"]["failed"], rows["d4"]["waiting"], rows["d4"]["running"]) == (1, 1, 0)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["$gt", "$ne", "$where", "dossier", "kind", "payload", "x"])
            | st.text(max_size=8),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
PARAMS = st.dictionaries(
    st.sampled_from(["status", "kind", "dossier", "has_instruction", "severity", "submitted_from",
                     "submitted_to", "cursor", "limit", "office", "dossier[$ne]", "all"]),
    st.text(max_size=30) | st.sampled_from(['{"$ne": null}', "failed", "-1", "1e9", "true"]),
    max_size=5,
)  # fmt: skip


@hsettings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=JSON, params=PARAMS)
def test_random_requests_never_answer_5xx_and_store_nothing(
    http: TestClient, store: Store, body: Any, params: dict[str, str]
) -> None:
    before = len(store.tasks.find())
    posted = http.post("/v1/tasks", json=body)
    assert posted.status_code < 500, posted.text
    if posted.status_code != 201:
        assert len(store.tasks.find()) == before
    listed = http.get("/v1/tasks", params=params)
    assert listed.status_code < 500, listed.text
    for path in ("/v1/instructions", "/v1/overview", "/v1/dossiers/d1"):
        assert http.get(path, params=params).status_code < 500
