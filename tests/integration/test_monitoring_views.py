"""The monitoring page over HTTP on a real store: language, scope, paging, live part, forms."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from dispatcher.api.app import create_app
from dossierflow.settings import Settings
from store import InstructionRecord, OfficeRecord, Role, Store, TaskRecord, UserRecord
from workers.vocabulary import InstructionStatus, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OFFICE = "office1"
FAILED_AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)  # 10:30 in Brussels


def _fail(store: Store, task_id: str, dossier: str, kind: str, *, code: str, severity: str) -> None:
    payload = {"dossier_code": "TYPO"}
    store.tasks.insert(
        TaskRecord(task_id, OFFICE, dossier, kind, payload, TaskStatus.SUBMITTED, FAILED_AT)
    )
    error = {"code": code, "severity": severity, "facts": payload}
    store.tasks.update(task_id, TaskStatus.FAILED, FAILED_AT, {"error": error})
    store.instructions.insert(
        InstructionRecord(
            f"{task_id}/1", task_id, OFFICE, dossier, kind, code, severity, payload,
            InstructionStatus.OPEN, FAILED_AT,
        )
    )  # fmt: skip


@pytest.fixture
def page(settings: Settings, store: Store) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app on this test's store (no broker: these requests only read or are refused)."""
    store.offices.save(OfficeRecord(OFFICE, "Cabinet Liège", "Europe/Brussels", "fr"))
    store.users.save(UserRecord("admin", OFFICE, Role.ADMIN))
    store.users.save(
        UserRecord("manager", OFFICE, Role.DOSSIER_MANAGER, language="en", dossiers=("d1",))
    )
    store.users.save(UserRecord("support", None, Role.SUPPORT, language="en"))
    tokens = {u: store.tokens.issue(u) for u in ("admin", "manager", "support")}
    _fail(store, "t-act", "d1", "dossier.activate", code="unknown_dossier_code", severity="orange")
    _fail(store, "t-red", "d2", "dossier.sync", code="database_error", severity="red")

    def no_broker() -> object:
        raise AssertionError("the page must not reach the broker here")

    app = create_app(settings, store, client_factory=no_broker)  # type: ignore[arg-type]
    with TestClient(app, follow_redirects=False) as client:
        yield client, tokens


def log_in(client: TestClient, token: str) -> None:
    """Log in on the page as a person would: the cookie then holds a session."""
    answer = client.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text[:300]


def _get(client: TestClient, token: str, path: str, language: str | None = None) -> str:
    headers = {"Accept-Language": language} if language else {}
    log_in(client, token)
    answer = client.get(path, headers=headers)
    assert answer.status_code == 200, answer.text[:500]
    return answer.text


def test_the_page_speaks_the_users_then_the_browsers_then_the_offices_language(
    page: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = page
    assert '<html lang="nl">' in _get(client, tokens["admin"], "/tasks", "nl-BE,nl;q=0.9")
    french = _get(client, tokens["admin"], "/tasks")  # no header: the office's language
    assert '<html lang="fr">' in french and "Relancer" in french
    assert "Code dossier inconnu" in french  # the mails' instruction text
    english = _get(client, tokens["manager"], "/tasks", "nl")  # the user's own setting
    assert '<html lang="en">' in english and "Unknown dossier code" in english


def test_times_are_shown_in_the_offices_zone_with_a_relative_time(
    page: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = page
    html = _get(client, tokens["admin"], "/tasks", "nl")
    assert "27-11-2026, 10:30" in html
    assert re.search(r'class="ago">[0-9]+ (dagen|weken|maanden) geleden<', html)


def test_a_red_failure_offers_an_office_user_no_button_but_support_acts(
    page: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = page
    html = _get(client, tokens["admin"], "/tasks/t-red", "en")
    assert "Support acts" in html and "data-action" not in html and 'id="payload"' not in html
    support = _get(client, tokens["support"], f"/tasks/t-red?office={OFFICE}", "en")
    assert 'data-action="restart"' in support and 'id="payload"' in support  # JSON: support only


def test_a_dossier_manager_sees_only_their_dossier(
    page: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = page
    html = _get(client, tokens["manager"], "/dossiers/d1")
    assert "Monitoring dossier d1" in html and 'data-task="t-act"' in html
    assert 'data-task="t-red"' not in _get(client, tokens["manager"], "/tasks")
    assert 'data-dossier="d2"' not in _get(client, tokens["manager"], "/")
    log_in(client, tokens["manager"])
    assert client.get("/dossiers/d2").status_code == 404
    assert client.get("/tasks/t-red").status_code == 404


def test_stripes_link_to_the_filtered_monitoring_list(
    page: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = page
    html = _get(client, tokens["admin"], "/", "en")
    assert 'href="/tasks?dossier=d1&amp;severity=orange"' in html
    assert 'href="/tasks?dossier=d2&amp;severity=red"' in html
    listed = _get(client, tokens["admin"], "/tasks?dossier=d2&severity=red", "en")
    assert 'data-task="t-red"' in listed and 'data-task="t-act"' not in listed
    assert 'value="red" selected' in listed  # the filter form shows the URL's filters


def test_the_overview_pages_through_thousands_of_dossiers(
    page: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    client, tokens = page
    for n in range(230):
        store.tasks.insert(
            TaskRecord(f"w{n}", OFFICE, f"x{n:04d}", "dossier.sync", {"dossier_code": "C"},
                       TaskStatus.WAITING, FAILED_AT)
        )  # fmt: skip
    first = _get(client, tokens["admin"], "/", "en")
    assert first.count("data-dossier=") == 100 and "Page 1 of 3" in first
    last = _get(client, tokens["admin"], "/?page=3", "en")
    assert last.count("data-dossier=") == 32
    striped = _get(client, tokens["admin"], "/?show=striped", "en")
    assert striped.count("data-dossier=") == 2


def test_the_live_part_comes_alone_for_the_script_to_swap_in(
    page: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = page
    html = _get(client, tokens["admin"], "/tasks?fragment=1", "en")
    assert "<html" not in html and 'id="tasks"' in html and 'data-task="t-act"' in html
    assert '<script src="/static/live.js"' in _get(client, tokens["admin"], "/tasks", "en")
    assert client.get("/static/live.js").status_code == 200


def test_a_wrong_correction_comes_back_with_the_error_next_to_the_field(
    page: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    client, tokens = page
    html = _get(client, tokens["admin"], "/tasks/t-act", "fr")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert csrf is not None
    form = {"csrf": csrf.group(1), "next": "/tasks", "field.dossier_code": "pas bon!"}
    answer = client.post("/tasks/t-act/restart", data=form, headers={"Accept-Language": "fr"})
    assert answer.status_code == 422
    assert 'aria-invalid="true"' in answer.text
    assert 'id="fix-t-act-dossier_code-error">Cette valeur n&#39;est pas valide ici.' in answer.text
    assert 'value="pas bon!"' in answer.text
    json_edit = {"csrf": csrf.group(1), "payload": '{"dossier_code": "X"}'}
    assert client.post("/tasks/t-act/restart", data=json_edit).status_code == 403
    stale = {"csrf": "0" * 64, "field.dossier_code": "GOOD"}
    assert client.post("/tasks/t-act/restart", data=stale).status_code == 403
    task = store.tasks.get("t-act")
    assert (
        task is not None
        and task.status is TaskStatus.FAILED
        and task.payload["dossier_code"] == "TYPO"
    )


def test_a_user_chooses_their_language_on_the_page(
    page: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    client, tokens = page
    html = _get(client, tokens["admin"], "/tasks?status=failed", "nl")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert csrf is not None and '<label for="language">Taal</label>' in html
    form = {"csrf": csrf.group(1), "language": "fr", "next": "/tasks?status=failed"}
    answer = client.post("/language", data=form)
    assert answer.status_code == 303 and answer.headers["location"] == "/tasks?status=failed"
    html = _get(client, tokens["admin"], "/tasks", "nl")  # a new login: a new csrf value
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert csrf is not None and '<html lang="fr">' in html
    user = store.users.get("admin")
    assert user is not None and user.language == "fr"
    back = {"csrf": csrf.group(1), "language": "", "next": "https://elsewhere.example/"}
    assert client.post("/language", data=back).headers["location"] == "/"
    assert '<html lang="nl">' in client.get("/tasks", headers={"Accept-Language": "nl"}).text
    assert client.post("/language", data={**back, "language": "de"}).status_code == 422
