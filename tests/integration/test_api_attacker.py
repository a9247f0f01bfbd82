"""The HTTP side of the attacker (issue 10, item 5 and the page's part of item 9).

Over the real store through the app: a cookie replayed after logout, a revoked, disabled
or expired token, sessions that end, a bad csrf value, a form posted from another site,
guessing tokens, and the security headers on every answer.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from dispatcher.api.app import create_app
from dispatcher.api.guard import PLAIN_COOKIE, SECURE_COOKIE
from dossierflow.commands.api import users_revoke, users_token
from dossierflow.settings import Settings, SettingsError
from store import OfficeRecord, Role, Store, UserRecord
from store.sessions import SESSIONS
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OFFICE = "office1"
SAME = {"Origin": "http://testserver"}
FOREIGN = {"Origin": "https://evil.example"}
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')

MakeClient = Callable[..., TestClient]


@pytest.fixture
def admin(store: Store) -> str:
    """An admin of office1; returns a token."""
    store.offices.save(OfficeRecord(OFFICE, "Office One"))
    store.users.save(UserRecord("admin", OFFICE, Role.ADMIN, language="en"))
    return store.tokens.issue("admin")


@pytest.fixture
def make_client(settings: Settings, store: Store) -> Iterator[MakeClient]:
    """A client of an app on this test's store; keyword arguments override settings."""
    apps: list[FastAPI] = []
    clients: list[TestClient] = []

    def make(base_url: str = "http://testserver", **overrides: Any) -> TestClient:
        app = create_app(replace(settings, **overrides), store, action_wait_s=0.0)
        apps.append(app)
        client = TestClient(app, base_url=base_url, follow_redirects=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    for app in apps:
        app.state.service.clients.close()


def log_in(client: TestClient, token: str, cookie: str = PLAIN_COOKIE) -> str:
    """Log in on the page; return the session cookie's value."""
    answer = client.post("/login", data={"token": token}, headers=SAME)
    assert answer.status_code == 303, answer.text[:300]
    session = client.cookies.get(cookie)
    assert session, answer.headers.get("set-cookie")
    return session


def logged_in(client: TestClient) -> bool:
    """Whether the cookie the client holds opens the overview."""
    answer = client.get("/")
    if answer.status_code == 303:
        assert answer.headers["location"] == "/login"
        return False
    assert answer.status_code == 200, answer.text[:300]
    return True


def test_a_cookie_replayed_after_logout_gets_the_login_page(
    make_client: MakeClient, admin: str, store: Store
) -> None:
    client = make_client()
    session = log_in(client, admin)
    assert session != admin and admin not in str(list(store.collection(SESSIONS).find()))
    assert logged_in(client)
    assert client.post("/logout", headers=SAME).status_code == 303
    client.cookies.set(PLAIN_COOKIE, session)  # the attacker kept a copy
    assert not logged_in(client)
    assert store.collection(SESSIONS).count_documents({}) == 0


def test_revoke_and_disable_end_tokens_and_sessions_at_once(
    make_client: MakeClient,
    admin: str,
    settings: Settings,
    store: Store,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = make_client()
    log_in(client, admin)
    bearer = {"Authorization": f"Bearer {admin}"}
    assert client.get("/v1/tasks", headers=bearer).status_code == 200
    assert users_revoke(settings, argparse.Namespace(id="admin", users_command="revoke")) == 0
    assert client.get("/v1/tasks", headers=bearer).status_code == 401
    assert not logged_in(client)

    token = store.tokens.issue("admin")
    log_in(client, token)
    assert users_revoke(settings, argparse.Namespace(id="admin", users_command="disable")) == 0
    assert not logged_in(client)
    assert users_token(settings, argparse.Namespace(id="admin", days=None)) == 1
    assert "disabled" in capsys.readouterr().err
    behind = store.tokens.issue("admin")  # a token made behind the CLI's back: no use
    assert client.post("/login", data={"token": behind}, headers=SAME).status_code == 401
    assert client.get("/v1/tasks", headers={"Authorization": f"Bearer {behind}"}).status_code == 401


def test_an_expired_token_gets_401_and_cannot_log_in(
    make_client: MakeClient,
    admin: str,
    settings: Settings,
    store: Store,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert users_token(settings, argparse.Namespace(id="admin", days=2.0)) == 0
    printed = capsys.readouterr()
    expires = store.tokens.expires_at(printed.out.strip())
    assert expires is not None and f"expires {expires:%Y-%m-%d %H:%M} UTC" in printed.err
    assert timedelta(days=1.99) < expires - datetime.now(UTC) <= timedelta(days=2)
    client = make_client()
    expired = store.tokens.issue("admin", timedelta(seconds=-1))
    answer = client.get("/v1/tasks", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert client.post("/login", data={"token": expired}, headers=SAME).status_code == 401


@pytest.mark.parametrize("end", ["idle", "absolute"])
def test_a_session_ends_when_idle_and_after_its_longest_life(
    make_client: MakeClient, admin: str, end: str
) -> None:
    lifetime = {"session_idle_s": 1.0} if end == "idle" else {"session_max_s": 2.0}
    client = make_client(**lifetime)
    log_in(client, admin)
    assert logged_in(client)
    if end == "absolute":
        # used every 0.3 s, it still ends 2 s after login
        wait_for(lambda: not logged_in(client), 10, "the session's end", every=0.3)
    else:
        wait_for(lambda: not logged_in(client), 10, "the idle session's end", every=1.5)


@pytest.mark.parametrize(
    "csrf", ["", "x", "0" * 64, "é\u0000" * 40, "ff" * 5000, "a b", "%00"], ids=repr
)
def test_a_bad_csrf_value_gets_403_never_500(
    make_client: MakeClient, admin: str, csrf: str
) -> None:
    client = make_client()
    log_in(client, admin)
    answer = client.post(
        "/language", data={"csrf": csrf, "language": "nl", "next": "/"}, headers=SAME
    )
    assert answer.status_code == 403


def test_a_form_posted_from_another_site_gets_403_login_included(
    make_client: MakeClient, admin: str
) -> None:
    client = make_client()
    for headers in (FOREIGN, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        assert client.post("/login", data={"token": admin}, headers=headers).status_code == 403
    assert client.cookies.get(PLAIN_COOKIE) is None
    log_in(client, admin)
    csrf = _CSRF.search(client.get("/").text)
    assert csrf is not None
    form = {"csrf": csrf.group(1), "language": "nl", "next": "/"}
    assert client.post("/language", data=form, headers=FOREIGN).status_code == 403
    assert client.post("/logout", headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert logged_in(client)  # the foreign logout did nothing
    same = {**SAME, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/language", data=form, headers=same).status_code == 303


def test_failed_logins_are_limited_per_address_with_retry_after(
    make_client: MakeClient, admin: str
) -> None:
    client = make_client(login_failures=3)
    with capture_logs() as logs:
        for n in range(3):
            guess = f"dft_guess{n}" + "x" * 40
            assert client.post("/login", data={"token": guess}, headers=SAME).status_code == 401
    failed = [e for e in logs if e["event"] == "login.failed"]
    assert len(failed) == 3 and failed[0]["address"] == "testclient"
    assert "dft_guess" not in str(logs)  # never the token
    limited = client.post("/login", data={"token": admin}, headers=SAME)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    api = client.get("/v1/tasks", headers={"Authorization": f"Bearer {admin}"})
    assert api.status_code == 429 and int(api.headers["retry-after"]) > 0
    assert api.headers["content-type"] == "application/problem+json"


def test_bad_bearer_tokens_are_limited_per_token_prefix() -> None:
    from dispatcher.api.problems import Problem
    from dispatcher.api.throttle import LoginThrottle

    throttle = LoginThrottle(limit=2, window_s=60)
    for address in ("10.0.0.1", "10.0.0.2"):
        throttle.check(address, "dft_abcd" + "1" * 40)
        throttle.failed(address, "dft_abcd" + "1" * 40, "api")
    with pytest.raises(Problem) as refused:
        throttle.check("10.0.0.3", "dft_abcd" + "2" * 40)  # same prefix, new address
    assert refused.value.status == 429 and "Retry-After" in refused.value.headers
    throttle.check("10.0.0.3", "dft_wxyz" + "2" * 40)  # another prefix passes


def test_every_answer_carries_the_security_headers(make_client: MakeClient, admin: str) -> None:
    client = make_client()
    answers = [client.get("/login"), client.get("/"), client.get("/v1/tasks")]
    log_in(client, admin)
    answers += [client.get("/"), client.get("/tasks/nope"), client.post("/logout", headers=SAME)]
    for answer in answers:
        headers = answer.headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in headers  # the local mode: plain http


def test_outside_the_local_mode_the_cookie_is_secure_host_only_with_hsts(
    make_client: MakeClient, admin: str
) -> None:
    secret = "s" * 40
    client = make_client(base_url="https://testserver", local_mode="off", csrf_secret=secret)
    answer = client.post("/login", data={"token": admin}, headers={"Origin": "https://testserver"})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SECURE_COOKIE}=") and "Secure" in cookie and "Path=/" in cookie
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Domain" not in cookie
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert logged_in(client)
    # another replica with the same secret accepts this replica's form token
    csrf = _CSRF.search(client.get("/").text)
    assert csrf is not None
    other = make_client(base_url="https://testserver", local_mode="off", csrf_secret=secret)
    other.cookies.set(SECURE_COOKIE, client.cookies[SECURE_COOKIE])
    form = {"csrf": csrf.group(1), "language": "", "next": "/"}
    assert other.post("/language", data=form).status_code == 303


def test_outside_the_local_mode_the_api_needs_a_csrf_secret(
    settings: Settings, store: Store
) -> None:
    with pytest.raises(SettingsError, match="DOSSIERFLOW_CSRF_SECRET"):
        create_app(replace(settings, local_mode="off", csrf_secret=""), store)


def test_sessions_past_their_end_are_pruned(store: Store) -> None:
    sessions = store.sessions(timedelta(minutes=30), timedelta(hours=12))
    sessions.open("admin", "d" * 64)
    assert store.collection(SESSIONS).count_documents({}) == 1
    assert sessions.prune(datetime.now(UTC)) == 0
    assert sessions.prune(datetime.now(UTC) + timedelta(hours=13)) == 1
    assert store.collection(SESSIONS).count_documents({}) == 0
