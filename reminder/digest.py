"""Who gets which reminder on a reminder day (pure: instructions + day + office → digests).

A dossier is reminded when its oldest open accountant (orange) instruction is at least
five calendar days old on the reminder day, both dates taken in the office's time zone;
the digest then lists every open accountant instruction of that dossier. Example from the
product description, reminder day Monday 2023-11-20: oldest instruction of 2023-11-16
→ 4 days, not reminded; instructions of 2023-11-15 and 2023-11-19 → reminded with both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from reminder.schedule import MIN_AGE_DAYS, age_in_days
from store.records import InstructionRecord, OfficeRecord, Role, UserRecord
from workers.vocabulary import InstructionStatus, Severity


@dataclass(frozen=True)
class Recipient:
    """A person a mail goes to, in their language."""

    user_id: str
    email: str
    language: str


@dataclass(frozen=True)
class DossierReminder:
    """One dossier of a digest: its open accountant instructions, oldest first."""

    dossier: str
    oldest: date  # local creation date of the oldest open instruction
    age_days: int
    instructions: tuple[InstructionRecord, ...]


@dataclass(frozen=True)
class Digest:
    """The reminder mail of one recipient for one reminder day."""

    office: OfficeRecord
    day: date
    recipient: Recipient
    dossiers: tuple[DossierReminder, ...]


@dataclass(frozen=True)
class DigestPlan:
    """Everything a reminder day decides for one office (also what a dry run prints)."""

    digests: tuple[Digest, ...]
    not_due: tuple[DossierReminder, ...]  # open instructions, but younger than the limit
    unaddressed: tuple[DossierReminder, ...]  # due, but nobody to send it to


def local_date(at: datetime, zone: ZoneInfo) -> date:
    """The calendar date of an instant in a time zone (naive instants are taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo("UTC"))
    return at.astimezone(zone).date()


def recipients_for(office: str, dossier: str, users: Iterable[UserRecord]) -> tuple[Recipient, ...]:
    """The dossier's managers; the office admins when it has none. Users without e-mail skip."""
    own = [u for u in users if u.office == office and u.email]
    managers = [u for u in own if u.role is Role.DOSSIER_MANAGER and dossier in u.dossiers]
    chosen = managers or [u for u in own if u.role is Role.ADMIN]
    return tuple(Recipient(u.id, u.email, u.language) for u in sorted(chosen, key=lambda u: u.id))


def dossier_reminders(
    instructions: Iterable[InstructionRecord], office: OfficeRecord, day: date
) -> list[DossierReminder]:
    """Open accountant instructions of the office that exist on `day`, grouped by dossier."""
    zone = ZoneInfo(office.timezone)
    grouped: dict[str, list[tuple[date, InstructionRecord]]] = defaultdict(list)
    for item in instructions:
        if item.office != office.id or item.severity != Severity.ORANGE:
            continue
        if item.status is not InstructionStatus.OPEN:
            continue
        created = local_date(item.created_at, zone)
        # A catch-up run lists what the reminder day itself would have listed.
        if created <= day:
            grouped[item.dossier].append((created, item))
    reminders = []
    for dossier in sorted(grouped):
        rows = sorted(grouped[dossier], key=lambda row: (row[1].created_at, row[1].id))
        oldest = rows[0][0]
        reminders.append(
            DossierReminder(dossier, oldest, age_in_days(oldest, day), tuple(r for _, r in rows))
        )
    return reminders


def plan_digests(
    office: OfficeRecord,
    instructions: Iterable[InstructionRecord],
    users: Sequence[UserRecord],
    day: date,
) -> DigestPlan:
    """The digests of one office for reminder day `day`, one per recipient."""
    per_recipient: dict[Recipient, list[DossierReminder]] = defaultdict(list)
    not_due, unaddressed = [], []
    for reminder in dossier_reminders(instructions, office, day):
        if reminder.age_days < MIN_AGE_DAYS:
            not_due.append(reminder)
            continue
        recipients = recipients_for(office.id, reminder.dossier, users)
        if not recipients:
            unaddressed.append(reminder)
        for recipient in recipients:
            per_recipient[recipient].append(reminder)
    digests = tuple(
        Digest(office, day, recipient, tuple(per_recipient[recipient]))
        for recipient in sorted(per_recipient, key=lambda r: r.user_id)
    )
    return DigestPlan(digests, tuple(not_due), tuple(unaddressed))
