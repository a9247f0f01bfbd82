"""A payload's dossier code cannot reach another dossier: 422 at restart and at submit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dossierflow.settings import Settings
from store import InstructionRecord, OfficeRecord, Role, Store, TaskRecord, UserRecord
from store.records import DossierProfile
from workers.vocabulary import InstructionStatus, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TASK = "t-d0001"


@pytest.fixture
def http(settings: Settings, store: Store) -> Iterator[TestClient]:
    """The app on this test's database and virtual host; actions do not wait for a decision."""
    app = create_app(settings, store, action_wait_s=0.0)
    with TestClient(app) as client:
        yield client
    app.state.service.clients.close()


@pytest.fixture
def tokens(store: Store) -> dict[str, str]:
    """Office1 with d0001 (code C1) and d0002 (C2), office2 with e1 (C9); a failed
    activation of d0001; a manager of d0001 and a platform service, with their tokens."""
    now = datetime.now(UTC)
    for office in ("office1", "office2"):
        store.offices.save(OfficeRecord(office, office))
    profiles = store.profiles
    for office, dossier, code in (
        ("office1", "d0001", "C1"),
        ("office1", "d0002", "C2"),
        ("office2", "e1", "C9"),
    ):
        profiles.add(DossierProfile(office, dossier, dossier, code))
    payload = {"dossier_code": "TYPO"}
    store.tasks.insert(
        TaskRecord(TASK, "office1", "d0001", "dossier.activate", payload, TaskStatus.SUBMITTED, now)
    )
    error = {"code": "unknown_dossier_code", "severity": "orange"}
    store.tasks.update(TASK, TaskStatus.FAILED, now, {"error": error})
    store.dossiers.ensure("office1", "d0001", now)
    store.dossiers.set("office1.d0001", now, blocked=True, active=TASK)
    store.instructions.insert(
        InstructionRecord(f"{TASK}/1", TASK, "office1", "d0001", "dossier.activate",
                          error["code"], "orange", payload, InstructionStatus.OPEN, now)
    )  # fmt: skip
    users = (
        UserRecord("u-mgr", "office1", Role.DOSSIER_MANAGER, dossiers=("d0001",)),
        UserRecord("u-platform", "office1", Role.PLATFORM),
    )
    issued = {}
    for user in users:
        store.users.save(user)
        issued[user.id] = store.tokens.issue(user.id)
    return issued


def test_a_restart_with_another_dossiers_code_gets_a_422(
    http: TestClient, store: Store, tokens: dict[str, str]
) -> None:
    manager = {"Authorization": f"Bearer {tokens['u-mgr']}"}
    url = f"/v1/tasks/{TASK}/restart"
    refused = http.post(url, json={"payload": {"dossier_code": "C2"}}, headers=manager)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "belongs to another dossier" in refused.json()["detail"]
    assert "d0002" not in refused.json()["detail"]
    task = store.tasks.get(TASK)
    assert task is not None and task.status is TaskStatus.FAILED
    assert task.payload == {"dossier_code": "TYPO"}
    # Its own code, another office's code and a code no dossier has are all accepted.
    for code in ("C1", "C9", "NEW1"):
        accepted = http.post(url, json={"payload": {"dossier_code": code}}, headers=manager)
        assert accepted.status_code == 202, (code, accepted.text)


def test_a_submission_with_another_dossiers_code_gets_a_422(
    http: TestClient, tokens: dict[str, str]
) -> None:
    platform = {"Authorization": f"Bearer {tokens['u-platform']}"}

    def submit(dossier: str, code: str) -> int:
        body = {"dossier": dossier, "kind": "dossier.sync", "payload": {"dossier_code": code}}
        return http.post("/v1/tasks", json=body, headers=platform).status_code

    assert submit("d0001", "C2") == 422
    assert submit("d0002", "C1") == 422
    assert submit("d0001", "C1") == 201
    assert submit("d0002", "C9") == 201  # another office's code: that office's business
    assert submit("d0003", "NEW1") == 201
