"""Pure parts of the API: scopes of each role, bearer parsing, opaque cursors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.api.auth import Principal, bearer
from dispatcher.api.models import decode_cursor, encode_cursor
from dispatcher.api.problems import Problem
from store import Role, UserRecord
from store.monitoring import Scope

pytestmark = pytest.mark.timeout(30)


def who(role: Role, office: str | None = "o1", dossiers: tuple[str, ...] = ()) -> Principal:
    return Principal(UserRecord("u", office, role, dossiers=dossiers), "digest")


def test_the_office_comes_from_the_token_except_for_support() -> None:
    assert who(Role.ADMIN).scope("o2") == Scope("o1")
    assert who(Role.PLATFORM).scope("o2") == Scope("o1")
    assert who(Role.DOSSIER_MANAGER, dossiers=("d1",)).scope("o2") == Scope("o1", ("d1",))
    assert who(Role.SUPPORT, None).scope("o2") == Scope("o2")
    assert who(Role.SUPPORT, None).scope() == Scope(None)
    with pytest.raises(Problem) as raised:
        who(Role.SUPPORT, None).scope(need_office=True)
    assert raised.value.slug == "office-required"


def test_a_dossier_manager_sees_only_assigned_dossiers_of_the_own_office() -> None:
    manager = who(Role.DOSSIER_MANAGER, dossiers=("d1",))
    assert manager.sees("o1", "d1")
    assert not manager.sees("o1", "d2")
    assert not manager.sees("o2", "d1")
    assert who(Role.ADMIN).sees("o1", "d2") and not who(Role.ADMIN).sees("o2", "d2")
    assert who(Role.SUPPORT, None).sees("o9", "d9")


def test_the_scope_is_a_filter_of_plain_values() -> None:
    assert Scope("o1", ("d1",)).query() == {"office": "o1", "dossier": {"$in": ["d1"]}}
    assert Scope(None).query() == {}


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc ", "abc"),
        ("Basic abc", None),
        ("Bearer ", None),
        (None, None),
    ],
)
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


def test_a_cursor_round_trips() -> None:
    at = datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)
    assert decode_cursor(encode_cursor((at, "t1"))) == (at, "t1")
    assert encode_cursor(None) is None and decode_cursor(None) is None


@given(st.text(max_size=80))
def test_any_other_cursor_is_a_problem_not_a_crash(text: str) -> None:
    try:
        decoded = decode_cursor(text)
    except Problem as exc:
        assert exc.status == 422
    else:
        assert decoded is None or decoded[0].tzinfo is not None
