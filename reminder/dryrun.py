"""`reminder run --dry-run`: print who would get which digest, send nothing.

The output names recipients by user id and address (it is for the operator running the
command, not a log) and instructions by id, code and date; no instruction text or facts.
"""

from __future__ import annotations

from typing import TextIO
from zoneinfo import ZoneInfo

from reminder.digest import DossierReminder
from reminder.schedule import MIN_AGE_DAYS, next_reminder_day
from reminder.service import MailContext, OfficeReminder, digest_key
from store.outbox import Outbox
from workers.texts import kind_label


def _dossier_lines(reminder: DossierReminder, zone: ZoneInfo) -> list[str]:
    count = len(reminder.instructions)
    lines = [
        f"    dossier {reminder.dossier!r}: oldest open instruction {reminder.oldest}, "
        f"{reminder.age_days} days old, {count} open instruction{'s' if count != 1 else ''}"
    ]
    for item in reminder.instructions:
        created = item.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        kind = kind_label(item.kind, "en")
        lines.append(f"      - {item.id}  {item.code}  ({kind}, created {created})")
    return lines


def _office_lines(
    reminder: OfficeReminder, ctx: MailContext, outbox: Outbox
) -> tuple[list[str], int]:
    office = reminder.office
    head = f"office {office.id} ({office.name}, {office.timezone}): today {reminder.today}"
    if reminder.day is None or reminder.plan is None:
        upcoming = next_reminder_day(reminder.today, ctx.anchor)
        return [f"{head}: no reminder day in the last 6 days (next: {upcoming})"], 0
    lines = [f"{head}: digest of reminder day {reminder.day} ({reminder.day:%A})"]
    plan = reminder.plan
    keys = [digest_key(d) for d in plan.digests]
    done = outbox.existing(keys)
    would_send = 0
    for digest, key in zip(plan.digests, keys, strict=True):
        who = digest.recipient
        count = len(digest.dossiers)
        state = "already decided, not sent again" if key in done else "would send"
        would_send += key not in done
        lines.append(
            f"  {state}: mail to {who.user_id} <{who.email}> ({who.language}), "
            f"{count} dossier{'s' if count != 1 else ''}"
        )
        for dossier in digest.dossiers:
            lines.extend(_dossier_lines(dossier, ZoneInfo(office.timezone)))
    for dossier in plan.not_due:
        lines.append(
            f"  not reminded: dossier {dossier.dossier!r}: oldest open instruction "
            f"{dossier.oldest}, {dossier.age_days} days old (needs {MIN_AGE_DAYS})"
        )
    for dossier in plan.unaddressed:
        lines.append(
            f"  NOBODY TO REMIND: dossier {dossier.dossier!r} is due but has no manager "
            "and the office no admin with an e-mail address"
        )
    if not plan.digests and not plan.not_due and not plan.unaddressed:
        lines.append("  no open accountant instructions")
    return lines, would_send


def print_dry_run(
    reminders: list[OfficeReminder], ctx: MailContext, outbox: Outbox, out: TextIO
) -> int:
    """Print the plan of every office; return how many mails a real run would send."""
    total = 0
    for reminder in reminders:
        lines, count = _office_lines(reminder, ctx, outbox)
        total += count
        print("\n".join(lines), file=out)
    if not reminders:
        print("no offices", file=out)
    print(
        f"dry run: {total} mail{'s' if total != 1 else ''} would be sent; nothing was sent",
        file=out,
    )
    return total
