"""A `sent` mark lost to a concurrent update must not make the same mailer resend.

On FerretDB an update writes the whole document back, so another process's failure
record, read before our mark and written after it, puts the entry back to `pending`
(the duplicated support mail of the 10,000-task chaos run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast

from reminder.mailer import ACCEPTED_MEMORY, Mailer, RetryPolicy
from store.outbox import Outbox, OutboxEntry, OutboxStatus

NOW = datetime(2026, 12, 2, 14, 3, 35, tzinfo=UTC)


class LosingOutbox:
    """Entries in memory; `lose_marks` puts each `sent` mark back to pending, as FerretDB did."""

    def __init__(self, *entries: OutboxEntry) -> None:
        self.entries = {e.id: e for e in entries}
        self.lose_marks = True
        self.marks: list[str] = []

    def pending(self, limit: int = 100) -> list[OutboxEntry]:
        found = [e for e in self.entries.values() if e.status == OutboxStatus.PENDING]
        return found[:limit]

    def mark_sent(self, entry_id: str, at: datetime) -> None:
        self.marks.append(entry_id)
        entry = self.entries[entry_id]
        status = OutboxStatus.PENDING if self.lose_marks else OutboxStatus.SENT
        self.entries[entry_id] = replace(entry, status=status, sent_at=at)

    def record_failure(self, entry_id: str, error: str, *, permanent: bool) -> None:
        raise AssertionError("no failure expected")


class Sink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> None:
        self.sent.append(message)


def mail(key: str) -> OutboxEntry:
    return OutboxEntry(key, "instruction", "office2", NOW, "s@x", ("support@x",), key.encode())


def mailer(outbox: LosingOutbox, sink: Sink) -> Mailer:
    return Mailer(cast(Outbox, outbox), sink, RetryPolicy(attempts=1), clock=lambda: NOW)


def test_a_sent_mark_lost_to_a_concurrent_failure_record_does_not_resend_the_mail() -> None:
    outbox, sink = LosingOutbox(mail("instruction:m1:support")), Sink()
    the_mailer = mailer(outbox, sink)
    assert the_mailer.deliver().sent == 1
    # The next passes find the entry pending again: the mark is redone, the mail not sent.
    assert the_mailer.deliver().sent == 0
    outbox.lose_marks = False
    assert the_mailer.deliver().sent == 0
    assert sink.sent == [b"instruction:m1:support"]
    assert outbox.marks == ["instruction:m1:support"] * 3
    assert outbox.entries["instruction:m1:support"].status == OutboxStatus.SENT
    assert outbox.entries["instruction:m1:support"].sent_at == NOW
    assert the_mailer.deliver().sent == 0 and len(outbox.marks) == 3


def test_the_mailer_forgets_the_oldest_accepted_mails_past_its_memory() -> None:
    outbox, sink = LosingOutbox(), Sink()
    outbox.lose_marks = False
    the_mailer = mailer(outbox, sink)
    keys = [f"instruction:m{n}:support" for n in range(ACCEPTED_MEMORY + 1)]
    outbox.entries = {k: mail(k) for k in keys}
    assert the_mailer.deliver(limit=len(keys)).sent == len(keys)
    # Only a mailer that never sent it (or forgot it) sends a mail found pending again.
    for key in (keys[0], keys[-1]):
        outbox.entries[key] = mail(key)
    assert the_mailer.deliver().sent == 1
    assert sink.sent.count(keys[0].encode()) == 2
    assert sink.sent.count(keys[-1].encode()) == 1
