"""Pure parts of the shared reads: the list's default and the scopes both front ends use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.api.auth import Principal
from dispatcher.api.problems import Problem
from dispatcher.api.reads import Reads, TaskQuery
from store import Role, Store, UserRecord
from store.monitoring import Monitoring, Scope
from workers.vocabulary import TaskStatus

pytestmark = pytest.mark.timeout(30)


def who(role: Role, office: str | None = "o1", dossiers: tuple[str, ...] = ()) -> Principal:
    return Principal(UserRecord("u", office, role, dossiers=dossiers), "digest")


def reads() -> Reads:
    """Reads whose scope rules need no store: any store read fails the test."""
    return Reads(cast(Store, None), cast(Monitoring, None))


QUERIES = st.builds(
    TaskQuery,
    statuses=st.lists(st.sampled_from(TaskStatus), max_size=2, unique=True).map(tuple),
    kind=st.sampled_from([None, "dossier.sync"]),
    dossier=st.sampled_from([None, "d1"]),
    has_instruction=st.sampled_from([None, True, False]),
    severity=st.sampled_from([None, "orange", "red"]),
    submitted_from=st.sampled_from([None, datetime(2026, 1, 1, tzinfo=UTC)]),
    show_all=st.booleans(),
)


@given(QUERIES)
def test_a_list_with_no_status_instruction_colour_or_all_shows_what_needs_a_person(
    query: TaskQuery,
) -> None:
    f = query.filter()
    chosen = (
        bool(query.statuses)
        or query.has_instruction is not None
        or query.severity is not None
        or query.show_all
    )
    assert f.needs_attention is not chosen
    assert (f.statuses, f.kind, f.dossier) == (query.statuses, query.kind, query.dossier)
    assert (f.has_instruction, f.severity) == (query.has_instruction, query.severity)
    assert (f.submitted_from, f.submitted_to) == (query.submitted_from, query.submitted_to)


def test_a_dossier_outside_the_users_scope_is_not_found() -> None:
    manager = who(Role.DOSSIER_MANAGER, dossiers=("d1",))
    assert reads().list_scope(manager, "o2", "d1") == Scope("o1", ("d1",))
    assert reads().list_scope(manager, None) == Scope("o1", ("d1",))
    assert reads().dossier_scope(manager, None, "d1") == Scope("o1", ("d1",))
    assert reads().dossier_scope(who(Role.ADMIN), "o2", "d2") == Scope("o1", ("d2",))
    for refused in (
        lambda: reads().list_scope(manager, None, "d2"),
        lambda: reads().dossier_scope(manager, None, "d2"),
    ):
        with pytest.raises(Problem) as raised:
            refused()
        assert (raised.value.status, raised.value.slug) == (404, "not-found")


def test_support_names_the_office_of_a_dossier() -> None:
    support = who(Role.SUPPORT, None)
    assert reads().dossier_scope(support, "o2", "d9") == Scope("o2", ("d9",))
    assert reads().list_scope(support, None, "d9") == Scope(None)
    with pytest.raises(Problem) as raised:
        reads().dossier_scope(support, None, "d9")
    assert raised.value.slug == "office-required"
