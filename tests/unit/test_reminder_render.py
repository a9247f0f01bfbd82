"""Rendered mails: both parts, every language, and no header or markup injection."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime
from email.message import EmailMessage

import pytest

from reminder.digest import plan_digests
from reminder.render import (
    compose,
    dossier_link,
    message_id_for,
    render_digest,
    render_instruction,
    render_support,
)
from store.records import InstructionRecord, OfficeRecord, Role, UserRecord
from workers.vocabulary import InstructionStatus

HOSTILE = "B\r\nBcc: victim@evil.test\r\n<script>alert(1)</script>"
OFFICE = OfficeRecord("o1", "Office <b>One</b>", "Europe/Brussels", "nl")
BASE = "http://monitor.test"


def instruction(
    dossier: str = "B", code: str = "invalid_period", severity: str = "orange"
) -> InstructionRecord:
    return InstructionRecord(
        id="t1/1", task_id="t1", office="o1", dossier=dossier, kind="booking_proposal.process",
        code=code, severity=severity, facts={"period": "2024-13<img src=x>\r\nX-Evil: 1"},
        status=InstructionStatus.OPEN, created_at=datetime(2023, 11, 15, 13, 5, tzinfo=UTC),
    )  # fmt: skip


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


@pytest.mark.parametrize(
    ("language", "subject", "phrase"),
    [
        ("nl", "Actie nodig in dossier B: Periode afgesloten of onbekend", "Wat moet je doen?"),
        (
            "fr",
            "Action requise pour le dossier B : Période clôturée ou inconnue",
            "Que devez-vous faire ?",
        ),
        ("en", "Action needed in dossier B: Closed or unknown period", "What to do"),
    ],
)
def test_the_instruction_mail_speaks_the_recipients_language(
    language: str, subject: str, phrase: str
) -> None:
    mail = render_instruction(instruction(), OFFICE, language, BASE)
    message = parse(compose("k", "noreply@x.test", ["a@o1.test"], mail, datetime.now(UTC)))
    text, html = parts(message)
    assert message["Subject"] == subject
    assert phrase in text
    assert "2024-13" in text
    assert f"{BASE}/dossiers/B?office=o1" in text and f'href="{BASE}/dossiers/B?office=o1"' in html
    assert "14:05" in text  # 13:05 UTC shown in Brussels time


def test_a_hostile_dossier_name_and_facts_inject_neither_headers_nor_markup() -> None:
    item = instruction(HOSTILE)
    mail = render_instruction(item, OFFICE, "en", BASE)
    message = parse(compose("k", "noreply@x.test", ["a@o1.test"], mail, datetime.now(UTC)))
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert message["Subject"].startswith("Action needed in dossier B Bcc: victim@evil.test")
    text, html = parts(message)
    assert "<script>" not in html and "<img" not in html and "<b>One" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x&gt;" in html
    assert "/dossiers/B%0D%0ABcc%3A%20victim%40evil.test%0D%0A%3Cscript%3E" in html
    assert "\nBcc:" not in text


def test_red_instructions_are_written_for_support_in_english() -> None:
    item = instruction(code="database_error", severity="red")
    mail = render_support(item, OFFICE, BASE)
    assert mail.subject == "[dossierflow] Red instruction database_error in o1/B"
    assert "Damaged database" in mail.text and "t1/1" in mail.text and "period:" in mail.text


@pytest.mark.parametrize(("language", "subject"), [
    ("nl", "Herinnering: openstaande accountant-instructies (1 dossier)"),
    ("fr", "Rappel : instructions comptables en attente (1 dossier)"),
    ("en", "Reminder: open accountant instructions (1 dossier)"),
])  # fmt: skip
def test_the_digest_lists_every_open_instruction_of_the_due_dossier(
    language: str, subject: str
) -> None:
    user = UserRecord("u1", "o1", Role.ADMIN, "a@o1.test", language)
    first = instruction()
    second = InstructionRecord(
        **{
            **first.__dict__,
            "id": "t2/1",
            "created_at": datetime(2023, 11, 19, 9, 0, tzinfo=UTC),
            "code": "invalid_journal",
            "facts": {"journal": "VK<1>"},
        }
    )
    [digest] = plan_digests(OFFICE, [first, second], [user], date(2023, 11, 20)).digests
    mail = render_digest(digest, BASE)
    assert mail.subject == subject
    assert "VK<1>" in mail.text and "VK&lt;1&gt;" in mail.html
    assert mail.text.count("2024-13") == 1 and f"{BASE}/dossiers/B?office=o1" in mail.html


def test_the_message_id_is_fixed_by_the_outbox_key() -> None:
    assert message_id_for("digest:u1:2023-11-20") == message_id_for("digest:u1:2023-11-20")
    assert message_id_for("digest:u1:2023-11-20") != message_id_for("digest:u2:2023-11-20")
    mail = render_support(instruction(severity="red"), OFFICE, BASE)
    raw = compose("digest:u1:2023-11-20", "s@x.test", ["a@b.test"], mail, datetime.now(UTC))
    assert parse(raw)["Message-ID"] == message_id_for("digest:u1:2023-11-20")
    assert parse(raw)["Auto-Submitted"] == "auto-generated"


def test_links_percent_encode_ids() -> None:
    assert (
        dossier_link("http://m.test/", "o 1", "a/b") == "http://m.test/dossiers/a%2Fb?office=o%201"
    )
