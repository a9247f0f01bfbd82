"""The reminder digest end to end: real MongoDB-compatible server, real SMTP sink."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dossierflow import cli
from dossierflow.settings import Settings
from reminder.mailer import Mailer, RetryPolicy, SmtpTransport
from reminder.service import MailContext, RunResult, mail_instructions, run_reminders
from reminder.sink import SmtpSink
from store import InstructionRecord, OfficeRecord, Role, Store, UserRecord
from store.outbox import Outbox
from tests.waiting import wait_for
from workers.vocabulary import InstructionStatus

pytestmark = pytest.mark.integration

BRUSSELS = ZoneInfo("Europe/Brussels")
FAST = RetryPolicy(attempts=3, first_wait_s=0.01, max_wait_s=0.05)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MailWorld:
    """One test's database, outbox and SMTP sink, with helpers to fill them."""

    settings: Settings
    store: Store
    outbox: Outbox
    sink: SmtpSink
    zone: ZoneInfo = BRUSSELS

    @property
    def ctx(self) -> MailContext:
        return self.settings.mail_context()

    def mailer(self, **kwargs: object) -> Mailer:
        transport = SmtpTransport(self.settings.smtp())
        return Mailer(self.outbox, transport, FAST, **kwargs)  # type: ignore[arg-type]

    def run(self, day: date) -> RunResult:
        """What `dossierflow reminder run --date DAY` does."""
        return run_reminders(self.store, self.outbox, self.mailer(), self.ctx, on=day)

    def mail(self) -> RunResult:
        """What one pass of `dossierflow reminder mail` does."""
        return mail_instructions(self.store, self.outbox, self.mailer(), self.ctx)

    def office(self, office: str = "o1", tz: str = "Europe/Brussels") -> None:
        self.store.offices.save(OfficeRecord(office, f"Office {office}", tz, "nl"))

    def user(
        self, uid: str, role: Role, language: str = "nl", *dossiers: str, office: str = "o1"
    ) -> None:
        self.store.users.save(
            UserRecord(uid, office, role, f"{uid}@{office}.test", language, dossiers)
        )

    def instruction(
        self, dossier: str, local: datetime, *, n: int = 1, code: str = "invalid_period",
        severity: str = "orange", facts: dict[str, str] | None = None, office: str = "o1",
    ) -> str:  # fmt: skip
        task = f"task-{dossier}-{n}"
        self.store.instructions.insert(
            InstructionRecord(
                id=f"{task}/1", task_id=task, office=office, dossier=dossier,
                kind="booking_proposal.process", code=code, severity=severity,
                facts={"period": "2023-13"} if facts is None else facts,
                status=InstructionStatus.OPEN,
                created_at=local.replace(tzinfo=self.zone).astimezone(UTC),
            )
        )  # fmt: skip
        return f"{task}/1"

    def received(self, count: int) -> list[EmailMessage]:
        """The sink's messages once there are `count` of them (and exactly that many)."""
        wait_for(lambda: len(self.sink.files()) >= count, 10, f"{count} mails in the sink")
        messages = self.sink.messages()
        assert len(messages) == count, [m["Subject"] for m in messages]
        return messages


@pytest.fixture
def world(settings: Settings, store: Store, tmp_path: Path) -> Iterator[MailWorld]:
    port = free_port()
    mine = replace(settings, smtp_port=port, monitoring_base_url="http://monitor.test")
    sink = SmtpSink("127.0.0.1", port, tmp_path / "mail")
    sink.start()
    outbox = store.outbox
    outbox.ensure_indexes()
    yield MailWorld(mine, store, outbox, sink)
    sink.stop()


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def example(world: MailWorld) -> None:
    """The product description's example, dossier A and B managed by u-man."""
    world.office()
    world.user("u-admin", Role.ADMIN, "fr")
    world.user("u-man", Role.DOSSIER_MANAGER, "nl", "A", "B")
    world.instruction(
        "A", datetime(2023, 11, 16, 10, 0), code="invalid_journal", facts={"journal": "AAA"}
    )
    world.instruction("B", datetime(2023, 11, 15, 9, 0), n=1, facts={"period": "2023-13"})
    world.instruction(
        "B", datetime(2023, 11, 19, 18, 0), n=2, code="invalid_vat_code", facts={"vat_code": "V99"}
    )


def test_the_example_reminds_dossier_b_with_both_instructions_and_not_dossier_a(
    world: MailWorld,
) -> None:
    example(world)
    result = world.run(date(2023, 11, 20))
    assert (result.decided, result.delivery.sent) == (1, 1)
    [mail] = world.received(1)
    assert mail["To"] == "u-man@o1.test"
    assert mail["Subject"] == "Herinnering: openstaande accountant-instructies (1 dossier)"
    text = body(mail)
    assert "Dossier B: oudste instructie van 15/11/2023 (5 dagen)" in text
    assert "Periode 2023-13" in text and "Btw-code V99" in text
    assert "Dossier A" not in text and "AAA" not in text


def test_a_dossier_is_reminded_from_five_days_not_at_four(world: MailWorld) -> None:
    world.office()
    world.user("u-man", Role.DOSSIER_MANAGER, "en", "D4", "D5", "D6")
    for age in (4, 5, 6):
        world.instruction(f"D{age}", datetime(2023, 11, 20 - age, 23, 30))
    world.run(date(2023, 11, 20))
    [mail] = world.received(1)
    text = body(mail)
    assert "Dossier D5: oldest instruction from 2023-11-15 (5 days)" in text
    assert "Dossier D6: oldest instruction from 2023-11-14 (6 days)" in text
    assert "D4" not in text


def test_a_monday_that_is_no_reminder_day_sends_nothing(world: MailWorld) -> None:
    example(world)
    result = world.run(date(2023, 11, 27))
    assert result.decided == 0 and world.sink.files() == []


@pytest.mark.parametrize(
    ("run_day", "sent"), [(date(2023, 11, 21), 1), (date(2023, 11, 26), 1), (date(2023, 11, 27), 0)]
)
def test_a_missed_reminder_day_is_caught_up_within_six_days_not_later(
    world: MailWorld, run_day: date, sent: int
) -> None:
    example(world)
    assert world.run(run_day).delivery.sent == sent
    if sent:
        [mail] = world.received(1)
        assert "Dossier B" in body(mail)
        assert [e.ref for e in world.outbox.entries("digest")] == ["2023-11-20"]


def test_running_twice_the_same_day_and_again_during_catch_up_sends_once(world: MailWorld) -> None:
    example(world)
    assert world.run(date(2023, 11, 20)).delivery.sent == 1
    assert world.run(date(2023, 11, 20)).decided == 0
    assert world.run(date(2023, 11, 23)).decided == 0
    world.received(1)


def test_a_daylight_saving_week_counts_local_calendar_days(world: MailWorld) -> None:
    # DST starts Sunday 2024-03-31 in Brussels; make the Monday after it a reminder day.
    world.settings = replace(world.settings, reminder_anchor="2024-04-01")
    world.office()
    world.user("u-man", Role.DOSSIER_MANAGER, "en", "LATE", "EARLY")
    world.instruction(
        "LATE", datetime(2024, 3, 27, 23, 30)
    )  # 5 local days; 4 d 23.5 h by the clock
    world.instruction("EARLY", datetime(2024, 3, 28, 0, 30))  # 03-27 in UTC, but 4 local days
    world.run(date(2024, 4, 1))
    text = body(world.received(1)[0])
    assert "Dossier LATE: oldest instruction from 2024-03-27 (5 days)" in text
    assert "EARLY" not in text


def test_reminder_days_follow_the_rhythm_through_a_53_week_year(world: MailWorld) -> None:
    world.office()
    world.user("u-man", Role.DOSSIER_MANAGER, "en", "B")
    world.instruction("B", datetime(2026, 12, 20, 12, 0))
    assert world.run(date(2026, 12, 21)).decided == 0  # a Monday, ISO week 52: no reminder day
    assert world.run(date(2026, 12, 28)).decided == 1  # ISO week 53
    assert world.run(date(2027, 1, 4)).decided == 0  # ISO week 1: no reminder day
    assert world.run(date(2027, 1, 11)).decided == 1  # ISO week 2: still open, reminded again
    assert [e.ref for e in world.outbox.entries("digest")] == ["2026-12-28", "2027-01-11"]
    world.received(2)


def test_each_recipient_reads_the_digest_in_their_language(world: MailWorld) -> None:
    world.office()
    for uid, language in (("u-nl", "nl"), ("u-fr", "fr"), ("u-en", "en")):
        world.user(uid, Role.DOSSIER_MANAGER, language, "B")
    world.instruction("B", datetime(2023, 11, 10, 9, 0))
    world.run(date(2023, 11, 20))
    subjects = {m["To"]: m["Subject"] for m in world.received(3)}
    assert subjects == {
        "u-nl@o1.test": "Herinnering: openstaande accountant-instructies (1 dossier)",
        "u-fr@o1.test": "Rappel : instructions comptables en attente (1 dossier)",
        "u-en@o1.test": "Reminder: open accountant instructions (1 dossier)",
    }


def test_the_command_line_dry_run_prints_and_sends_nothing_then_the_run_sends(
    world: MailWorld, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example(world)
    for name in ("mongo_url", "mongo_db", "smtp_port", "monitoring_base_url"):
        monkeypatch.setenv(f"DOSSIERFLOW_{name.upper()}", str(getattr(world.settings, name)))
    monkeypatch.setenv("DOSSIERFLOW_LOG_LEVEL", os.environ.get("DOSSIERFLOW_LOG_LEVEL", "warning"))
    assert cli.main(["reminder", "run", "--date", "2023-11-20", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would send: mail to u-man <u-man@o1.test> (nl), 1 dossier" in out
    assert "not reminded: dossier 'A'" in out
    assert "dry run: 1 mail would be sent; nothing was sent" in out
    assert world.sink.files() == [] and world.outbox.entries() == []
    assert cli.main(["reminder", "run", "--date", "2023-11-20"]) == 0
    world.received(1)
    assert cli.main(["reminder", "run", "--date", "2023-11-20", "--dry-run"]) == 0
    assert "already decided, not sent again" in capsys.readouterr().out
