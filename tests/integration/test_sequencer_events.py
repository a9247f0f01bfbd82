"""The sequencer on the real database: stale and foreign events change nothing."""

from __future__ import annotations

import pytest

from broker.messages import Envelope, MessageType, utcnow
from dispatcher.sequencer import Sequencer
from store import Store, TaskRecord, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Recorder:
    """The sequencer's way out, recorded instead of published (the broker is not tested here)."""

    def __init__(self) -> None:
        self.runs: list[Envelope] = []

    def run(self, env: Envelope) -> None:
        self.runs.append(env)

    def retry_later(self, delay_s: int, env: Envelope) -> None:
        raise AssertionError("no retry expected")


def _event(kind: MessageType, task_id: str, **data: object) -> Envelope:
    return Envelope(kind, task_id, "o1", "d1", utcnow(), dict(data))


def test_events_of_an_earlier_release_or_another_dossier_change_nothing(store: Store) -> None:
    out = Recorder()
    sequencer = Sequencer(store, out)
    store.insert_task(
        TaskRecord("t1", "o1", "d1", "dossier.sync", {"dossier_code": "c"},
                   TaskStatus.SUBMITTED, utcnow())
    )  # fmt: skip
    sequencer.handle(_event(MessageType.SUBMITTED, "t1"))
    (released,) = out.runs
    assert released.data["run"] == 1

    sequencer.handle(_event(MessageType.STARTED, "t1", attempt=1, run=1))
    sequencer.handle(_event(MessageType.DONE, "t1", attempt=1, run=0))  # an older release
    foreign = Envelope(MessageType.DONE, "t1", "o2", "d9", utcnow(), {"attempt": 1, "run": 1})
    sequencer.handle(foreign)  # another office's connector naming this task
    task = store.task("t1")
    assert task is not None and task.status is TaskStatus.RUNNING

    sequencer.handle(_event(MessageType.DONE, "t1", attempt=1, run=1))
    task = store.task("t1")
    assert task is not None and task.status is TaskStatus.DONE
