"""The two jobs of the reminder package: instruction mails and the reminder digest.

Both decide mails by inserting them into the outbox under a unique key and then let the
mailer send whatever is pending, so running either job twice sends nothing twice.
The CLI and the tests call these functions; nothing here reads the environment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from reminder.digest import Digest, DigestPlan, plan_digests, recipients_for
from reminder.mailer import DeliveryReport, Mailer
from reminder.render import (
    Rendered,
    compose,
    message_id_for,
    render_digest,
    render_instruction,
    render_support,
)
from reminder.schedule import due_reminder_day
from store.mongo import Store
from store.outbox import Outbox, OutboxEntry, OutboxStatus
from store.records import InstructionRecord, OfficeRecord, UserRecord
from workers.vocabulary import InstructionStatus, Severity

log = structlog.get_logger("dossierflow.reminder")

CREATE_OFFICE = "create it with `dossierflow offices add`"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current instant in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class MailContext:
    """What every mail needs from the settings."""

    sender: str
    support: str
    base_url: str
    anchor: date


def instruction_key(instruction_id: str, recipient: str) -> str:
    """Outbox key of an instruction mail to one recipient (a user id or `support`)."""
    return f"instruction:{instruction_id}:{recipient}"


def fanout_key(instruction_id: str) -> str:
    """Outbox key of the marker saying an instruction's mails were all decided."""
    return f"instruction:{instruction_id}"


def digest_key(digest: Digest) -> str:
    """Outbox key of a recipient's digest for a reminder day."""
    return f"digest:{digest.recipient.user_id}:{digest.day.isoformat()}"


def _valid_address(address: str) -> bool:
    # A CR/LF in an address from the database must not reach the To header or RCPT TO.
    return "@" in address and address.isprintable() and "," not in address


def _mail(
    key: str,
    mail: Rendered,
    to: str,
    *,
    kind: str,
    ref: str,
    office: str,
    ctx: MailContext,
    now: datetime,
) -> OutboxEntry:
    """An outbox entry holding the composed message to one address."""
    return OutboxEntry(
        id=key,
        kind=kind,
        office=office,
        created_at=now,
        sender=ctx.sender,
        recipients=(to,),
        message=compose(key, ctx.sender, [to], mail, now),
        message_id=message_id_for(key),
        ref=ref,
    )


@dataclass
class _Directory:
    """Offices and users read once per pass."""

    store: Store
    offices: dict[str, OfficeRecord | None] = field(default_factory=dict)
    users: dict[str, list[UserRecord]] = field(default_factory=dict)

    def office(self, office_id: str) -> OfficeRecord | None:
        if office_id not in self.offices:
            self.offices[office_id] = self.store.offices.get(office_id)
        return self.offices[office_id]

    def users_of(self, office_id: str) -> list[UserRecord]:
        if office_id not in self.users:
            self.users[office_id] = self.store.users.find(office=office_id)
        return self.users[office_id]


def enqueue_instruction_mails(
    store: Store,
    outbox: Outbox,
    ctx: MailContext,
    clock: Clock = utc_now,
    unknown: list[str] | None = None,
) -> int:
    """Decide the mails of every open instruction not handled yet; the number decided."""
    items = store.instructions.find(status=InstructionStatus.OPEN)
    done = outbox.existing(fanout_key(i.id) for i in items)
    directory = _Directory(store)
    decided = 0
    waiting: Counter[str] = Counter()
    for item in items:
        if fanout_key(item.id) in done:
            continue
        if directory.office(item.office) is None:
            waiting[item.office] += 1
            # An accountant's mail waits for its office and its time zone; support acts now.
            if item.severity != Severity.RED:
                continue
        decided += _enqueue_one(item, directory, outbox, ctx, clock())
    (unknown if unknown is not None else []).extend(_logged_unknown(waiting))
    return decided


def _logged_unknown(waiting: Counter[str]) -> list[str]:
    for office_id, count in sorted(waiting.items()):
        log.error("office.unknown", office=office_id, instructions=count, hint=CREATE_OFFICE)
    return sorted(waiting)


def _enqueue_one(
    item: InstructionRecord, directory: _Directory, outbox: Outbox, ctx: MailContext, now: datetime
) -> int:
    # Only a red one gets here without its office: its mail shows the time as "(UTC)".
    office = directory.office(item.office) or OfficeRecord(item.office, item.office, "UTC")
    about = {"kind": "instruction", "ref": item.id, "office": item.office}
    entries: list[OutboxEntry] = []
    if item.severity == Severity.RED:
        mail = render_support(item, office, ctx.base_url)
        key = instruction_key(item.id, "support")
        entries.append(_mail(key, mail, ctx.support, **about, ctx=ctx, now=now))
    else:
        for person in recipients_for(item.office, item.dossier, directory.users_of(item.office)):
            if not _valid_address(person.email):
                log.warning("mail.bad_address", user=person.user_id, instruction=item.id)
                continue
            mail = render_instruction(item, office, person.language, ctx.base_url)
            key = instruction_key(item.id, person.user_id)
            entries.append(_mail(key, mail, person.email, **about, ctx=ctx, now=now))
        if not entries:
            log.warning("instruction.no_recipient", instruction=item.id, office=item.office)
    decided = sum(outbox.add(entry) for entry in entries)
    # The marker goes last: a crash before it makes the next pass redo the (unique) inserts.
    marker = OutboxEntry(
        fanout_key(item.id),
        "instruction_fanout",
        item.office,
        now,
        ref=item.id,
        status=OutboxStatus.MARKER,
    )
    outbox.add(marker)
    log.info("instruction.mails_decided", instruction=item.id, office=item.office, mails=decided)
    return decided


@dataclass(frozen=True)
class OfficeReminder:
    """What a reminder run decides for one office."""

    office: OfficeRecord
    today: date  # the run's day in the office's time zone
    day: date | None  # the reminder day whose digest is due, None outside catch-up
    plan: DigestPlan | None


def plan_reminders(
    store: Store, ctx: MailContext, on: date | None, clock: Clock = utc_now
) -> list[OfficeReminder]:
    """Per office: the due reminder day (from `on`, else the office's today) and its digests."""
    result = []
    for office in store.offices.all():
        try:
            zone = ZoneInfo(office.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            log.error("office.bad_timezone", office=office.id)
            continue
        today = on or clock().astimezone(zone).date()
        day = due_reminder_day(today, ctx.anchor)
        plan = None
        if day is not None:
            items = store.instructions.find(
                office=office.id, status=InstructionStatus.OPEN, severity=Severity.ORANGE
            )
            plan = plan_digests(office, items, store.users.find(office=office.id), day)
        result.append(OfficeReminder(office, today, day, plan))
    return result


def enqueue_digests(
    outbox: Outbox, ctx: MailContext, reminders: list[OfficeReminder], clock: Clock = utc_now
) -> int:
    """Decide the digest mails of a run; digests decided before are left alone."""
    decided = 0
    for reminder in reminders:
        for digest in reminder.plan.digests if reminder.plan else ():
            key = digest_key(digest)
            to = digest.recipient.email
            if not _valid_address(to):
                log.warning("mail.bad_address", user=digest.recipient.user_id, digest=key)
                continue
            day, office = digest.day.isoformat(), digest.office.id
            mail = render_digest(digest, ctx.base_url)
            if outbox.add(
                _mail(key, mail, to, kind="digest", ref=day, office=office, ctx=ctx, now=clock())
            ):
                decided += 1
                user = digest.recipient.user_id
                log.info(
                    "digest.decided",
                    office=office,
                    user=user,
                    day=day,
                    dossiers=len(digest.dossiers),
                )
    return decided


@dataclass(frozen=True)
class RunResult:
    """What a pass decided and what the mailer then did with everything pending."""

    decided: int
    delivery: DeliveryReport
    unknown_offices: tuple[str, ...] = ()  # offices of open instructions that do not exist


def unknown_offices(store: Store, known: set[str]) -> list[str]:
    """Offices of open accountant instructions that do not exist, each logged as an error."""
    items = store.instructions.find(status=InstructionStatus.OPEN, severity=Severity.ORANGE)
    return _logged_unknown(Counter(i.office for i in items if i.office not in known))


def mail_instructions(
    store: Store, outbox: Outbox, mailer: Mailer, ctx: MailContext, clock: Clock = utc_now
) -> RunResult:
    """One pass of `reminder mail`: decide new instruction mails, send what is pending."""
    unknown: list[str] = []
    decided = enqueue_instruction_mails(store, outbox, ctx, clock, unknown)
    return RunResult(decided, mailer.deliver(), tuple(unknown))


def run_reminders(
    store: Store,
    outbox: Outbox,
    mailer: Mailer,
    ctx: MailContext,
    *,
    on: date | None = None,
    clock: Clock = utc_now,
) -> RunResult:
    """`reminder run`: decide the digests due on `on` (else each office's today), send."""
    reminders = plan_reminders(store, ctx, on, clock)
    # No time zone, no reminder day: an office that does not exist gets no digest, loudly.
    unknown = unknown_offices(store, {o.id for o in store.offices.all()})
    decided = enqueue_digests(outbox, ctx, reminders, clock)
    return RunResult(decided, mailer.deliver(), tuple(unknown))
