"""Which dossiers a reminder day reminds, and to whom (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminder.digest import plan_digests, recipients_for
from store.records import InstructionRecord, OfficeRecord, Role, UserRecord
from workers.vocabulary import InstructionStatus

BRUSSELS = ZoneInfo("Europe/Brussels")
OFFICE = OfficeRecord("o1", "Office One", "Europe/Brussels", "nl")
ADMIN = UserRecord("u-admin", "o1", Role.ADMIN, "admin@o1.test", "fr")
MANAGER = UserRecord("u-man", "o1", Role.DOSSIER_MANAGER, "man@o1.test", "nl", ("B",))
USERS = [ADMIN, MANAGER]


def instruction(
    dossier: str,
    local: datetime,
    *,
    n: int = 0,
    severity: str = "orange",
    status: InstructionStatus = InstructionStatus.OPEN,
    office: str = "o1",
) -> InstructionRecord:
    created = local.replace(tzinfo=BRUSSELS).astimezone(UTC)
    return InstructionRecord(
        id=f"t-{dossier}-{n}/1", task_id=f"t-{dossier}-{n}", office=office, dossier=dossier,
        kind="booking_proposal.process", code="invalid_period", severity=severity,
        facts={"period": "2023-13"}, status=status, created_at=created,
    )  # fmt: skip


def reminded(
    items: list[InstructionRecord], day: date, users: list[UserRecord] = USERS
) -> dict[str, dict[str, list[str]]]:
    """recipient -> dossier -> instruction ids."""
    plan = plan_digests(OFFICE, items, users, day)
    return {
        d.recipient.user_id: {r.dossier: [i.id for i in r.instructions] for r in d.dossiers}
        for d in plan.digests
    }


def test_the_example_of_the_product_description_holds_exactly() -> None:
    items = [
        instruction("A", datetime(2023, 11, 16, 9, 0)),
        instruction("B", datetime(2023, 11, 15, 14, 0), n=1),
        instruction("B", datetime(2023, 11, 19, 10, 0), n=2),
    ]
    plan = plan_digests(OFFICE, items, USERS, date(2023, 11, 20))
    assert reminded(items, date(2023, 11, 20)) == {"u-man": {"B": ["t-B-1/1", "t-B-2/1"]}}
    assert [(r.dossier, r.age_days) for r in plan.not_due] == [("A", 4)]


@pytest.mark.parametrize(("age", "due"), [(4, False), (5, True), (6, True)])
def test_a_dossier_is_reminded_from_five_calendar_days_on(age: int, due: bool) -> None:
    day = date(2023, 11, 20)
    created = datetime.combine(day - timedelta(days=age), datetime.min.time()).replace(
        hour=23, minute=59
    )
    result = reminded([instruction("B", created)], day)
    assert bool(result) is due


def test_dossiers_without_managers_go_to_the_office_admins() -> None:
    items = [instruction("C", datetime(2023, 11, 10, 8, 0))]
    assert reminded(items, date(2023, 11, 20)) == {"u-admin": {"C": ["t-C-0/1"]}}


def test_red_resolved_foreign_and_later_instructions_are_left_out() -> None:
    day = date(2023, 11, 20)
    old = datetime(2023, 11, 1, 12, 0)
    items = [
        instruction("R", old, severity="red"),
        instruction("S", old, status=InstructionStatus.RESOLVED),
        instruction("F", old, office="o2"),
        instruction("L", datetime(2023, 11, 21, 9, 0)),  # after the (catch-up) reminder day
    ]
    assert reminded(items, day) == {}


def test_one_mail_per_recipient_groups_every_due_dossier() -> None:
    manager = UserRecord("u-m2", "o1", Role.DOSSIER_MANAGER, "m2@o1.test", "en", ("B", "D"))
    items = [
        instruction("B", datetime(2023, 11, 1, 8, 0)),
        instruction("D", datetime(2023, 11, 2, 8, 0)),
    ]
    assert reminded(items, date(2023, 11, 20), [ADMIN, manager]) == {
        "u-m2": {"B": ["t-B-0/1"], "D": ["t-D-0/1"]}
    }


def test_recipients_without_an_address_or_of_another_office_do_not_count() -> None:
    silent = UserRecord("u-silent", "o1", Role.DOSSIER_MANAGER, "", "nl", ("B",))
    foreign = UserRecord("u-x", "o2", Role.DOSSIER_MANAGER, "x@o2.test", "nl", ("B",))
    assert [r.user_id for r in recipients_for("o1", "B", [silent, foreign, ADMIN])] == ["u-admin"]
    plan = plan_digests(
        OFFICE, [instruction("B", datetime(2023, 11, 1, 8, 0))], [silent], date(2023, 11, 20)
    )
    assert [r.dossier for r in plan.unaddressed] == ["B"]


@pytest.mark.parametrize(
    ("day", "created", "due"),
    [
        # Spring: DST starts Sunday 2024-03-31, so this week has a 23-hour day.
        (date(2024, 4, 1), datetime(2024, 3, 26, 23, 30), True),
        (date(2024, 4, 1), datetime(2024, 3, 27, 0, 30), True),  # 4 days 23 h, yet 5 calendar days
        (date(2024, 4, 1), datetime(2024, 3, 27, 23, 30), True),
        (date(2024, 4, 1), datetime(2024, 3, 28, 0, 30), False),  # UTC says 03-27, local 03-28
        # Autumn: DST ends Sunday 2024-10-27, a 25-hour day.
        (date(2024, 10, 28), datetime(2024, 10, 22, 23, 30), True),
        (date(2024, 10, 28), datetime(2024, 10, 23, 23, 30), True),  # 4 days 1.5 h by the clock
        (date(2024, 10, 28), datetime(2024, 10, 24, 0, 30), False),
    ],
)
def test_ages_are_counted_in_local_calendar_days_across_daylight_saving(
    day: date, created: datetime, due: bool
) -> None:
    assert bool(reminded([instruction("B", created)], day)) is due


@given(
    offsets=st.lists(st.integers(min_value=0, max_value=20 * 24 * 60), min_size=1, max_size=6),
    day=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
)
def test_a_dossier_is_reminded_exactly_when_its_oldest_local_date_is_five_days_back(
    offsets: list[int], day: date
) -> None:
    start = datetime.combine(day, datetime.min.time()) - timedelta(days=14)
    items = [instruction("B", start + timedelta(minutes=m), n=i) for i, m in enumerate(offsets)]
    oldest = min(i.created_at for i in items).astimezone(BRUSSELS).date()
    listed = reminded(items, day).get("u-man", {}).get("B", [])
    expected = [
        i.id
        for i in sorted(items, key=lambda i: (i.created_at, i.id))
        if i.created_at.astimezone(BRUSSELS).date() <= day
    ]
    assert listed == (expected if (day - oldest).days >= 5 else [])
