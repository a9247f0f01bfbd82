"""Strict inputs: unknown query parameters are refused, and the ops CLI prints no control codes."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dossierflow.commands import ops
from dossierflow.settings import Settings
from store import Store, TaskRecord
from tests.integration.test_api_access import seed
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PROBLEM = "application/problem+json"


@pytest.fixture
def http(settings: Settings, store: Store) -> Iterator[TestClient]:
    """The app with an admin's token in every request."""
    app = create_app(settings, store, action_wait_s=0.0)
    tokens = seed(store)
    with TestClient(app, headers={"Authorization": f"Bearer {tokens['admin']}"}) as client:
        yield client
    app.state.service.clients.close()


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/v1/tasks", {"status[$ne]": "x"}),
        ("GET", "/v1/tasks", {"status": "failed", "statuz": "done"}),
        ("GET", "/v1/tasks", {"dossier[$gt]": ""}),
        ("GET", "/v1/instructions", {"where": "1"}),
        ("GET", "/v1/overview", {"office\x1b[31m": "x"}),
        ("GET", "/v1/tasks/t-office1-d1", {"fields": "payload"}),
        ("GET", "/v1/dossiers/d1", {"limit": "5"}),
        ("POST", "/v1/tasks/t-office1-d1/cancel", {"force": "true"}),
    ],
)
def test_an_unknown_query_parameter_is_a_422_problem(
    http: TestClient, method: str, path: str, params: dict[str, str]
) -> None:
    answer = http.request(method, path, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    document = answer.json()
    assert document["type"] == "/problems/invalid-request"
    assert "unknown query parameter" in document["detail"]
    assert "\x1b" not in answer.text


def test_declared_query_parameters_still_work(http: TestClient) -> None:
    assert http.get("/v1/tasks", params={"status": ["failed", "done"], "all": "true"}).is_success
    assert http.get("/v1/tasks", params={"dossier": "d1", "limit": 1}).is_success
    assert http.get("/v1/instructions", params={"status": "all", "severity": "red"}).is_success


def test_the_ops_cli_strips_control_characters_from_what_it_prints(
    store: Store, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "\x1b[2J\x1b]0;owned\x07\rfake\u202eevil\u2028x\x08"
    now = datetime.now(UTC)
    store.tasks.insert(
        TaskRecord("t-hostile", "office1", "d1", "dossier.sync", {}, TaskStatus.SUBMITTED, now)
    )
    store.tasks.update("t-hostile", TaskStatus.FAILED, now, {"error": {"code": hostile}})
    listing = argparse.Namespace(
        office=None, dossier=None, status=None, all=True, severity=None, limit=10, json=False
    )
    assert ops.tasks_list(settings, listing) == 0
    show = argparse.Namespace(task_id="t-hostile", json=False, lang="en")
    assert ops.tasks_show(settings, show) == 0
    missing = argparse.Namespace(task_id="nope\x1b[31m", json=False, lang="en")
    assert ops.tasks_show(settings, missing) == 1
    out, err = capsys.readouterr()
    for text in (out, err):
        assert not any(c in text for c in "\x1b\x07\r\x08\u202e\u2028"), repr(text)
    assert "[2J]0;ownedfakeevilx" in out  # the readable rest is kept
    as_json = argparse.Namespace(task_id="t-hostile", json=True, lang="en")
    assert ops.tasks_show(settings, as_json) == 0
    assert "\x1b" not in capsys.readouterr().out  # JSON escapes them


def test_clean_keeps_ordinary_text() -> None:
    assert ops.clean("Dossier d0001 — één fout, 10 €") == "Dossier d0001 — één fout, 10 €"
    assert ops.clean(None) == "None"
