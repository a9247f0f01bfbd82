"""Instruction mails and SMTP delivery through the outbox: once, in order, uninjectable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from dossierflow.tools.maildemo import mail_failures
from reminder.errors import MailRejected
from reminder.mailer import Mailer, SmtpTransport
from reminder.render import message_id_for
from reminder.service import enqueue_instruction_mails, instruction_key
from store import Role
from store.outbox import OUTBOX, OutboxStatus
from tests.integration.test_mail_digest import FAST, MailWorld, body, world

pytestmark = pytest.mark.integration
__all__ = ["world"]  # the fixture, shared with the digest tests

NOW = datetime(2023, 11, 20, 10, 0)


def office_with_people(world: MailWorld) -> None:
    world.office()
    world.user("u-admin", Role.ADMIN, "en")
    world.user("u-nl", Role.DOSSIER_MANAGER, "nl", "B")
    world.user("u-fr", Role.DOSSIER_MANAGER, "fr", "B")


def test_a_new_orange_instruction_mails_each_manager_in_their_language(world: MailWorld) -> None:
    office_with_people(world)
    world.instruction("B", NOW, facts={"period": "2024-13"})
    result = world.mail()
    assert (result.decided, result.delivery.sent) == (2, 2)
    mails = {m["To"]: m for m in world.received(2)}
    assert (
        mails["u-nl@o1.test"]["Subject"]
        == "Actie nodig in dossier B: Periode afgesloten of onbekend"
    )
    assert mails["u-fr@o1.test"]["Subject"] == (
        "Action requise pour le dossier B : Période clôturée ou inconnue"
    )
    assert "Periode 2024-13 is afgesloten" in body(mails["u-nl@o1.test"])
    assert "http://monitor.test/dossiers/B?office=o1" in body(mails["u-fr@o1.test"])


def test_without_managers_the_office_admins_are_mailed(world: MailWorld) -> None:
    office_with_people(world)
    world.instruction("C", NOW, code="unknown_dossier_code", facts={"dossier_code": "DC-9"})
    world.mail()
    [mail] = world.received(1)
    assert mail["To"] == "u-admin@o1.test"
    assert "No company in the accounting package has dossier code DC-9" in body(mail)


def test_a_red_instruction_goes_to_the_support_mailbox_in_english(world: MailWorld) -> None:
    office_with_people(world)
    world.instruction(
        "B", NOW, code="database_error", severity="red", facts={"dossier_code": "DC-1"}
    )
    world.mail()
    [mail] = world.received(1)
    assert mail["To"] == world.settings.support_mailbox
    assert mail["Subject"] == "[dossierflow] Red instruction database_error in o1/B"


def test_a_second_pass_and_a_resolved_instruction_send_nothing_more(world: MailWorld) -> None:
    office_with_people(world)
    world.instruction("B", NOW)
    assert world.mail().delivery.sent == 2
    assert world.mail().decided == 0
    late = world.instruction("B", NOW, n=2)
    world.store.instructions.resolve(late, NOW, "restarted")
    assert world.mail().decided == 0
    world.received(2)


def test_mails_wait_while_smtp_is_down_and_go_out_once_when_it_is_back(world: MailWorld) -> None:
    office_with_people(world)
    world.sink.stop()
    world.instruction("B", NOW)
    down = world.mail()
    assert (down.decided, down.delivery.sent, down.delivery.deferred) == (2, 0, 2)
    entries = [e for e in world.outbox.entries("instruction")]
    assert [e.status for e in entries] == [OutboxStatus.PENDING] * 2
    assert entries[0].attempts == FAST.attempts and "cannot reach" in entries[0].last_error
    world.sink.start()
    up = world.mail()
    assert (up.decided, up.delivery.sent) == (0, 2)
    assert world.mail().delivery.sent == 0
    mails = world.received(2)
    assert len({m["Message-ID"] for m in mails}) == 2


def test_a_server_back_during_the_backoff_gets_the_mail_in_the_same_run(world: MailWorld) -> None:
    office_with_people(world)
    world.sink.stop()
    world.instruction("C", NOW)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the backoff: bring the server back meanwhile
        waits.append(seconds)
        world.sink.start()

    enqueue_instruction_mails(world.store, world.outbox, world.ctx)
    report = world.mailer(sleep=sleep).deliver()
    assert (report.sent, report.deferred) == (1, 0) and len(waits) == 1
    [mail] = world.received(1)
    entry = world.outbox.entry(instruction_key("task-C-1/1", "u-admin"))
    assert entry is not None and entry.status is OutboxStatus.SENT and entry.attempts == 2
    assert mail["Message-ID"] == entry.message_id


def test_a_crash_after_the_server_took_the_mail_resends_it_with_the_same_message_id(
    world: MailWorld,
) -> None:
    office_with_people(world)
    world.instruction("C", NOW)
    enqueue_instruction_mails(world.store, world.outbox, world.ctx)
    [entry] = world.outbox.pending()
    # The process dies after the 250 to DATA, before marking the entry sent:
    SmtpTransport(world.settings.smtp()).send(entry.sender, entry.recipients, entry.message)
    assert world.mailer().deliver().sent == 1
    first, second = world.received(2)
    assert first["Message-ID"] == second["Message-ID"] == message_id_for(entry.id)
    assert first.as_bytes().split(b"\n", 1)[1] == second.as_bytes().split(b"\n", 1)[1]


def test_a_sent_mark_lost_to_another_mailers_failure_record_does_not_resend_the_mail(
    world: MailWorld,
) -> None:
    """The duplicated support mail of the 10,000-task chaos run, replayed step by step.

    A second mailer (a stray one of an earlier run, its SMTP server gone) recorded a failed
    attempt while this one marked the mail sent. FerretDB v1 applies an update by reading
    the document and writing the whole of it back: the failure record, read before the
    mark and written after it, put the entry back to pending, and the next pass sent it
    again.
    """
    office_with_people(world)
    world.instruction("C", NOW)
    enqueue_instruction_mails(world.store, world.outbox, world.ctx)
    [entry] = world.outbox.pending()
    client: MongoClient[dict[str, Any]] = MongoClient(world.settings.mongo_url)
    docs = client[world.settings.mongo_db][OUTBOX]
    stale = docs.find_one({"_id": entry.id})  # what the other mailer read ...
    assert stale is not None
    mailer = world.mailer()
    assert mailer.deliver().sent == 1
    error = "cannot reach the SMTP server: ConnectionRefusedError"
    docs.replace_one({"_id": entry.id}, {**stale, "attempts": 1, "last_error": error})
    client.close()  # ... and wrote back after our mark
    assert [e.id for e in world.outbox.pending()] == [entry.id]
    assert mailer.deliver().sent == 0
    [mail] = world.received(1)
    assert mail["Message-ID"] == entry.message_id
    again = world.outbox.entry(entry.id)
    assert again is not None and again.status is OutboxStatus.SENT and again.last_error == ""
    assert mailer.deliver().sent == 0 and world.outbox.pending() == []


class Refusing:
    """A server that refuses every mail for good."""

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> None:
        raise MailRejected("SMTP server answered 550: mailbox unknown")


def test_a_permanently_refused_mail_is_not_retried(world: MailWorld) -> None:
    office_with_people(world)
    world.instruction("C", NOW)
    enqueue_instruction_mails(world.store, world.outbox, world.ctx)
    assert Mailer(world.outbox, Refusing(), FAST).deliver().rejected == 1
    [entry] = world.outbox.entries("instruction")
    assert entry.status is OutboxStatus.FAILED and "550" in entry.last_error
    assert world.outbox.pending() == []


def test_a_hostile_dossier_name_injects_no_header_recipient_or_markup(world: MailWorld) -> None:
    hostile = "B\r\nBcc: victim@evil.test\r\nSubject: pwned\r\n\r\n<script>alert(1)</script>"
    world.office()
    world.user("u-man", Role.DOSSIER_MANAGER, "en", hostile)
    world.instruction(hostile, NOW, facts={"period": "<img src=x onerror=alert(1)>\nX-Evil: 1"})
    world.mail()
    [mail] = world.received(1)
    assert mail.get_all("X-Sink-Rcpt-To") == ["u-man@o1.test"]
    assert mail["Bcc"] is None and mail["X-Evil"] is None
    assert mail.get_all("Subject") == [
        "Action needed in dossier B Bcc: victim@evil.test Subject: pwned "
        "<script>alert(1)</script>: Closed or unknown period"
    ]
    html_part = mail.get_body(("html",))
    assert html_part is not None
    html = str(html_part.get_content())
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_demo_step_mails_every_open_instruction_into_a_local_sink(
    world: MailWorld, tmp_path: Path
) -> None:
    office_with_people(world)
    world.instruction("B", NOW)
    world.instruction("C", NOW, code="unknown_error", severity="red", facts={})
    summary = mail_failures(world.settings, world.store, tmp_path / "demo-mail")
    assert (summary.decided, summary.sent, summary.pending, len(summary.files)) == (3, 3, 0, 3)
    assert (
        "3 sent (0 pending)" in summary.describe()
        and str(tmp_path / "demo-mail") in summary.describe()
    )
