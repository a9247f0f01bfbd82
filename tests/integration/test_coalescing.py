"""Coalescing at submission: an equal sync joins only the dossier's latest submission.

No dispatcher runs: every task stays submitted (unreleased), so what decides is the
submission order alone. The lookup costs the same two reads by `_id` for a whole batch,
and a batch without a coalescible kind reads nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pymongo import monitoring

from dispatcher.client import Client, Submission
from dossierflow.settings import Settings
from store import Store
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OFFICE = "office1"


def sync(dossier: str) -> Submission:
    return Submission(OFFICE, dossier, "dossier.sync", {"dossier_code": f"c-{dossier}"})


def activate(dossier: str) -> Submission:
    return Submission(OFFICE, dossier, "dossier.activate", {"dossier_code": f"c-{dossier}"})


class Reads(monitoring.CommandListener):
    """The reads a client sends: (command, collection), in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "aggregate", "count"):
            self.sent.append((event.command_name, str(event.command[event.command_name])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing: counted when started."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing: counted when started."""

    def since(self, mark: int) -> list[tuple[str, str]]:
        """The reads sent after the first `mark` of them."""
        return self.sent[mark:]


@pytest.fixture
def counted(settings: Settings) -> Iterator[tuple[Client, Reads]]:
    """A client whose store records the reads it sends."""
    counter = Reads()
    store = Store.connect(settings.mongo_url, settings.mongo_db, listeners=[counter])
    client = Client.connect(settings, store)
    yield client, counter
    client.close()
    store.close()


def ids(client: Client, items: list[Submission]) -> list[str]:
    results = client.submit_many(items)
    assert all(r.task_id is not None for r in results), results
    return [r.task_id for r in results if r.task_id is not None]


def test_a_sync_joins_only_the_latest_submission_of_its_dossier(
    counted: tuple[Client, Reads], store: Store
) -> None:
    client, _ = counted
    (first,) = ids(client, [sync("d1")])
    # Within one batch and across batches: equal syncs join the waiting one...
    again, other = ids(client, [sync("d1"), sync("d2")])
    assert again == first and other != first
    # ...until another kind of task is submitted for the dossier after it.
    joined, booking, later, later_again = ids(
        client, [sync("d1"), activate("d1"), sync("d1"), sync("d1")]
    )
    assert joined == first
    assert booking != first
    assert later not in (first, booking) and later_again == later
    (plain,) = ids(client, [activate("d2")])  # on its own in a later batch
    (after,) = ids(client, [sync("d2")])
    assert plain != other and after not in (other, plain)
    # The latest sync joins again, across batches, as long as it is not released.
    assert ids(client, [sync("d1")]) == [later]
    store.tasks.update(later, TaskStatus.QUEUED, datetime.now(UTC), note="released")
    (fresh,) = ids(client, [sync("d1")])
    assert fresh != later
    assert len({t.id for t in store.tasks.find(office=OFFICE)}) == 7


def test_the_lookup_costs_two_reads_per_batch_and_nothing_without_a_coalescible_kind(
    counted: tuple[Client, Reads],
) -> None:
    client, reads = counted
    ids(client, [sync(f"d{n}") for n in range(50)])
    mark = len(reads.sent)
    ids(client, [sync(f"d{n}") for n in range(50)])  # all join: nothing is written
    coalescing = [r for r in reads.since(mark) if r[1] != "dossier_profiles"]  # dossier codes
    assert coalescing == [("find", "coalescing"), ("find", "tasks")], coalescing
    mark = len(reads.sent)
    ids(client, [activate(f"e{n}") for n in range(50)])
    assert [r for r in reads.since(mark) if r[1] != "dossier_profiles"] == []
