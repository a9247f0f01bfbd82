"""Who sees and does what over HTTP: the role x endpoint x object matrix, cell by cell."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dossierflow.settings import Settings
from store import InstructionRecord, OfficeRecord, Role, Store, TaskRecord, UserRecord
from workers.vocabulary import InstructionStatus, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Obj:
    """A failed task with an orange instruction in one office and dossier."""

    name: str
    office: str
    dossier: str
    task_id: str


OBJECTS = (
    Obj("own-d1", "office1", "d1", "t-office1-d1"),
    Obj("own-d2", "office1", "d2", "t-office1-d2"),
    Obj("foreign", "office2", "e1", "t-office2-e1"),
)
USERS = {
    "platform": UserRecord("u-platform", "office1", Role.PLATFORM),
    "admin": UserRecord("u-admin", "office1", Role.ADMIN, language="en"),
    "manager-d1": UserRecord("u-mgr1", "office1", Role.DOSSIER_MANAGER, dossiers=("d1",)),
    "manager-d2": UserRecord("u-mgr2", "office1", Role.DOSSIER_MANAGER, dossiers=("d2",)),
    "support": UserRecord("u-support", None, Role.SUPPORT),
}
CALLERS = (*USERS, "no-token", "bad-token")
ENDPOINTS = (
    "submit",
    "get-task",
    "list-tasks",
    "dossier",
    "overview",
    "instructions",
    "restart",
    "cancel",
    "resolve",
)


def failed_task(
    store: Store, office: str, dossier: str, task_id: str, *, kind: str = "dossier.activate",
    severity: str = "orange",
) -> None:  # fmt: skip
    """Store a failed task blocking its dossier, with its open instruction."""
    now = datetime.now(UTC)
    code = "unknown_dossier_code" if severity == "orange" else "database_error"
    payload = {"dossier_code": "TYPO"} if kind == "dossier.activate" else {}
    store.tasks.insert(
        TaskRecord(task_id, office, dossier, kind, payload, TaskStatus.SUBMITTED, now)
    )
    store.tasks.update(
        task_id, TaskStatus.FAILED, now, {"error": {"code": code, "severity": severity}}
    )
    store.dossiers.ensure(office, dossier, now)
    store.dossiers.set(f"{office}.{dossier}", now, blocked=True, active=task_id)
    store.instructions.insert(
        InstructionRecord(
            f"{task_id}/1", task_id, office, dossier, kind, code, severity,
            {"dossier_code": "TYPO"}, InstructionStatus.OPEN, now,
        )
    )  # fmt: skip


def seed(store: Store) -> dict[str, str]:
    """Offices, the objects of the matrix and a token per user."""
    store.offices.save(OfficeRecord("office1", "Office One"))
    store.offices.save(OfficeRecord("office2", "Office Two"))
    for obj in OBJECTS:
        failed_task(store, obj.office, obj.dossier, obj.task_id)
    tokens = store.tokens
    out = {}
    for name, user in USERS.items():
        store.users.save(user)
        out[name] = tokens.issue(user.id)
    out["bad-token"] = "dft_" + "x" * 43
    return out


@pytest.fixture
def http(settings: Settings, store: Store) -> Iterator[TestClient]:
    """The app on this test's database and virtual host; actions do not wait for a decision.

    The matrix sends an unknown token 27 times: more than failed logins may (429).
    """
    app = create_app(replace(settings, login_failures=1000), store, action_wait_s=0.0)
    with TestClient(app) as client:
        yield client
    app.state.service.clients.close()


def visible(caller: str, obj: Obj) -> bool:
    """The rule under test: who may see an object."""
    if caller == "support":
        return True
    if caller in ("platform", "admin"):
        return obj.office == "office1"
    return obj.office == "office1" and caller == f"manager-{obj.dossier}"


def expected(caller: str, endpoint: str, obj: Obj) -> tuple[int, bool | None]:
    """(status, whether the object is in a list answer) of one cell."""
    if caller in ("no-token", "bad-token"):
        return 401, None
    if endpoint == "submit":
        return (201 if caller in ("platform", "admin") else 403), None
    if endpoint in ("list-tasks", "overview", "instructions"):
        return 200, visible(caller, obj)
    if not visible(caller, obj):
        return 404, None
    if endpoint in ("restart", "cancel", "resolve"):
        return (403 if caller == "platform" else 202), None
    return 200, None


def call(http: TestClient, token: str | None, endpoint: str, obj: Obj) -> tuple[int, object]:
    """Make one cell's request; support (only) chooses the office with `office=`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # only the reads declare `office`; anywhere else it is an unknown parameter (422)
    reads = ("list-tasks", "dossier", "overview", "instructions")
    params = {"office": obj.office} if endpoint in reads else {}
    path = {
        "get-task": f"/v1/tasks/{obj.task_id}",
        "list-tasks": "/v1/tasks",
        "dossier": f"/v1/dossiers/{obj.dossier}",
        "overview": "/v1/overview",
        "instructions": "/v1/instructions",
    }
    if endpoint == "submit":
        # a fresh dossier, so the submit cells create nothing the read cells look at
        body = {
            "dossier": f"new-{obj.dossier}",
            "kind": "dossier.sync",
            "payload": {"dossier_code": "c"},
        }
        r = http.post("/v1/tasks", json=body, headers=headers, params=params)
    elif endpoint in path:
        r = http.get(path[endpoint], headers=headers, params=params)
    else:
        r = http.post(f"/v1/tasks/{obj.task_id}/{endpoint}", headers=headers, params=params)
    return r.status_code, r.json()


def listed(endpoint: str, body: object, obj: Obj) -> bool:
    """Whether a list answer holds the object."""
    assert isinstance(body, dict | list)
    if endpoint == "list-tasks":
        assert isinstance(body, dict)
        return obj.task_id in {t["id"] for t in body["items"]}
    if endpoint == "overview":
        assert isinstance(body, dict)
        return (obj.office, obj.dossier) in {(d["office"], d["dossier"]) for d in body["dossiers"]}
    assert isinstance(body, list)
    return obj.task_id in {i["task_id"] for i in body}


def test_every_role_sees_and_does_exactly_what_it_may(http: TestClient, store: Store) -> None:
    tokens = seed(store)
    cells = failures = 0
    wrong: list[str] = []
    for caller in CALLERS:
        for endpoint in ENDPOINTS:
            for obj in OBJECTS:
                cells += 1
                want_status, want_listed = expected(caller, endpoint, obj)
                status, body = call(http, tokens.get(caller), endpoint, obj)
                got_listed = listed(endpoint, body, obj) if want_listed is not None else None
                if status == 201:
                    made = store.tasks.get(str(body["id"]))  # type: ignore[index]
                    got_listed = None if made is None or made.office == "office1" else True
                if (status, got_listed) != (want_status, want_listed):
                    failures += 1
                    wrong.append(f"{caller} {endpoint} {obj.name}: {status} {got_listed}")
    assert cells == len(CALLERS) * len(ENDPOINTS) * len(OBJECTS) == 189
    assert wrong == [], f"{failures} of {cells} cells wrong"


def test_only_support_acts_on_red_instructions_and_cancels_non_activations(
    http: TestClient, store: Store
) -> None:
    tokens = seed(store)
    failed_task(store, "office1", "d1", "t-red", kind="dossier.sync", severity="red")
    failed_task(store, "office1", "d2", "t-sync", kind="dossier.sync")
    for caller, task_id, action, want in [
        ("admin", "t-red", "restart", 403),
        ("admin", "t-red", "resolve", 403),
        ("manager-d1", "t-red", "restart", 403),
        ("admin", "t-sync", "cancel", 403),
        ("admin", "t-sync", "restart", 202),
        ("support", "t-red", "restart", 202),
        ("support", "t-sync", "cancel", 202),
    ]:
        r = http.post(
            f"/v1/tasks/{task_id}/{action}", headers={"Authorization": f"Bearer {tokens[caller]}"}
        )
        assert r.status_code == want, (caller, task_id, action, r.text)
        if want == 403:
            assert r.headers["content-type"] == PROBLEM
            assert r.json()["type"] == "/problems/forbidden"
