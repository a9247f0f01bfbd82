"""Mails as bytes: Jinja2 templates (HTML autoescaped, plus plain text) in an EmailMessage.

Values from the database (dossier ids, facts) are flattened to one line before they reach
a sentence, sentences are escaped as a whole in the HTML part, and headers are set through
`email.message.EmailMessage` with the SMTP policy, which refuses CR/LF in a header value:
a hostile dossier name can neither add a header nor inject markup.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2

from reminder.digest import Digest, local_date
from reminder.schedule import MIN_AGE_DAYS
from reminder.wording import SUPPORT, format_date, format_moment, words
from store.records import InstructionRecord, OfficeRecord
from workers.texts import instruction_text, kind_label, language_of


@dataclass(frozen=True)
class Rendered:
    """The three parts of a mail a person reads."""

    subject: str
    text: str
    html: str


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("reminder", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(name: str, context: Mapping[str, Any]) -> Rendered:
    env = _templates()
    return Rendered(
        subject=str(context["subject"]),
        text=env.get_template(f"{name}.txt").render(context),
        html=env.get_template(f"{name}.html").render(context),
    )


def one_line(value: object) -> str:
    """A value on one line: control characters (CR, LF, TAB, ...) become spaces."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in str(value))
    return " ".join(text.split())


def dossier_link(base_url: str, office: str, dossier: str) -> str:
    """The dossier's page of `dossierflow api`; ids are percent-encoded.

    The page takes the office from the reader's login; `office` picks it for support,
    who sees every office.
    """
    office_part, dossier_part = quote(office, safe=""), quote(dossier, safe="")
    return f"{base_url.rstrip('/')}/dossiers/{dossier_part}?office={office_part}"


def _clean_facts(facts: Mapping[str, str]) -> dict[str, str]:
    return {str(k): one_line(v) for k, v in facts.items()}


def render_instruction(
    item: InstructionRecord, office: OfficeRecord, language: str, base_url: str
) -> Rendered:
    """The mail telling a dossier's manager about a new accountant instruction."""
    lang = language_of(language)
    w = words(lang)
    text = instruction_text(item.code, _clean_facts(item.facts), lang)
    dossier = one_line(item.dossier)
    when = item.created_at.astimezone(ZoneInfo(office.timezone))
    values = {
        "dossier": dossier,
        "office": one_line(office.name),
        "kind": kind_label(item.kind, lang),
        "when": format_moment(when, lang),
        "title": text.title,
    }
    return _render(
        "instruction",
        {
            "lang": lang,
            "subject": w["instruction_subject"].format(**values),
            "greeting": w["greeting"],
            "intro": w["instruction_intro"].format(**values),
            "what_to_do": w["what_to_do"],
            "title": text.title,
            "action": text.action,
            "link": dossier_link(base_url, item.office, item.dossier),
            "link_label": w["open_dossier"],
            "colon": w["colon"],
            "why": w["instruction_why"],
            "automatic": w["automatic"],
        },
    )


def render_support(item: InstructionRecord, office: OfficeRecord, base_url: str) -> Rendered:
    """The mail telling the support team about a red instruction (always in English)."""
    text = instruction_text(item.code, _clean_facts(item.facts), "en")
    when = item.created_at.astimezone(ZoneInfo(office.timezone))
    values = {
        "code": one_line(item.code),
        "office": one_line(item.office),
        "dossier": one_line(item.dossier),
        "kind": kind_label(item.kind, "en"),
        "when": format_moment(when, "en") + f" ({office.timezone})",
        "instruction": one_line(item.id),
        "task": one_line(item.task_id) or "-",
    }
    return _render(
        "support",
        {
            "subject": SUPPORT["subject"].format(**values),
            "intro": SUPPORT["intro"].format(**values),
            "ids": SUPPORT["ids"].format(**values),
            "title": text.title,
            "action": text.action,
            "facts": sorted(_clean_facts(item.facts).items()),
            "facts_label": SUPPORT["facts"],
            "link": dossier_link(base_url, item.office, item.dossier),
            "link_label": SUPPORT["open_dossier"],
            "automatic": SUPPORT["automatic"],
        },
    )


def render_digest(digest: Digest, base_url: str) -> Rendered:
    """The reminder mail of one recipient: due dossiers with their open instructions."""
    lang = language_of(digest.recipient.language)
    w = words(lang)
    zone = ZoneInfo(digest.office.timezone)
    dossiers = []
    for reminder in digest.dossiers:
        items = []
        for item in reminder.instructions:
            text = instruction_text(item.code, _clean_facts(item.facts), lang)
            created = format_date(local_date(item.created_at, zone), lang)
            line = w["digest_item"].format(
                created=created, kind=kind_label(item.kind, lang), title=text.title
            )
            items.append({"line": line, "action": text.action})
        heading = w["digest_dossier"].format(
            dossier=one_line(reminder.dossier),
            oldest=format_date(reminder.oldest, lang),
            age=reminder.age_days,
        )
        link = dossier_link(base_url, digest.office.id, reminder.dossier)
        dossiers.append({"heading": heading, "entries": items, "link": link})
    count = len(digest.dossiers)
    subject = w["digest_subject"].format(
        count=count, dossiers=w["dossier_one"] if count == 1 else w["dossier_many"]
    )
    return _render(
        "digest",
        {
            "lang": lang,
            "subject": subject,
            "greeting": w["greeting"],
            "intro": w["digest_intro"].format(days=MIN_AGE_DAYS),
            "dossiers": dossiers,
            "link_label": w["open_dossier"],
            "colon": w["colon"],
            "why": w["digest_why"],
            "automatic": w["automatic"],
        },
    )


def message_id_for(key: str) -> str:
    """The fixed Message-ID of an outbox entry: every attempt sends the same one."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@dossierflow>"


def compose(
    key: str, sender: str, recipients: Sequence[str], mail: Rendered, at: datetime
) -> bytes:
    """The whole message (headers, text and HTML alternatives) as it goes over SMTP."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = one_line(mail.subject)
    message["Date"] = email.utils.format_datetime(at)
    message["Message-ID"] = message_id_for(key)
    # RFC 3834: tells autoresponders (out-of-office) not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message.as_bytes()
