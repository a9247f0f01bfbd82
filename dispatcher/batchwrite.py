"""Turns the effects of a batch into one store write and one list of publishes.

Changes of one task within a batch are merged into one update (a task released, started
and done in one batch costs one write); every dossier the batch touched is written once
with its final state, stamped with the owner's epoch and the batch number.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from broker import topology
from broker.messages import RAW_KEEP_BYTES, Envelope, MessageType
from broker.rabbitmq import Outgoing
from dispatcher import core
from store.records import InstructionRecord
from store.sequencing import BatchWrite, HistoryRow
from workers.vocabulary import InstructionStatus, TaskStatus

# A task whose batch leaves it in one of these is out of flight: its release note goes.
LANDED = (TaskStatus.DONE.value, TaskStatus.FAILED.value, TaskStatus.RETRY_WAIT.value)


def release_envelope(d: core.Dossier, task: core.OpenTask, run: int, at: datetime) -> Envelope:
    """The work message of a release: everything a connector needs to run the task."""
    return Envelope(
        type=MessageType.RUN,
        task_id=task.id,
        office=d.office,
        dossier=d.dossier,
        at=at,
        data={"kind": task.kind, "payload": task.payload, "seq": task.seq, "run": run},
    )


def dossier_fields(d: core.Dossier, batch: int, at: datetime) -> dict[str, Any]:
    """What a dossier document holds: its order counters and who is active (for readers)."""
    head = d.head
    return {
        "office": d.office,
        "dossier": d.dossier,
        "next_seq": d.next_seq,
        "head": head.seq if head is not None else d.next_seq,
        "active": d.active,
        "blocked": d.blocked,
        "open": len(d.tasks),
        "batch": batch,
        "updated_at": at,
    }


class Collector:
    """Accumulates the effects of one batch."""

    def __init__(self, now: datetime, batch: int) -> None:
        self.now = now
        self.batch = batch
        self.write = BatchWrite()
        self.outgoing: list[Outgoing] = []
        # Partitions that released work in this batch: their confirmed mark must move.
        self.releasing: set[str] = set()
        self.released: list[core.OpenTask] = []  # stamped with the time of their publish
        self._tasks: dict[str, tuple[int, dict[str, Any], list[HistoryRow]]] = {}
        self._dossiers: dict[str, tuple[core.Dossier, int]] = {}
        # What readers' copies must read again, by office: tasks and dossier documents.
        self.changed_tasks: dict[str, set[str]] = defaultdict(set)
        self.changed_dossiers: dict[str, set[str]] = defaultdict(set)

    def add(self, d: core.Dossier, part: str, epoch: int, effects: list[core.Effect]) -> None:
        """Record the effects of one message (or a repair) of dossier `d`."""
        self._dossiers[d.key] = (d, epoch)
        # Work and timers carry the partition: what comes of them (events, dead letters,
        # expired timers) comes back here (broker/topology.py, PARTITIONS_EXCHANGE).
        route = {topology.PARTITION_HEADER: str(topology.partition_index(part))}
        for effect in effects:
            if isinstance(effect, core.Release):
                self.releasing.add(part)
                self.released.append(effect.task)
                self.write.releases.append((effect.task.id, d.key, effect.run, self.now))
            elif isinstance(effect, core.TaskChange) and "finished_at" in effect.fields:
                where = (d.office, part)
                self.write.finished[where] = self.write.finished.get(where, 0) + 1
            self._effect(d, epoch, effect, route)

    def _effect(
        self, d: core.Dossier, epoch: int, effect: core.Effect, route: dict[str, str]
    ) -> None:
        w = self.write
        if isinstance(effect, (core.TaskChange, core.Instruct, core.CloseInstructions)):
            self.changed_tasks[d.office].add(effect.task_id)
        if isinstance(effect, core.TaskChange):
            _, fields, history = self._tasks.setdefault(effect.task_id, (epoch, {}, []))

            fields.update(effect.fields)
            history.extend(HistoryRow(*entry) for entry in effect.history)
        elif isinstance(effect, core.Release):
            env = release_envelope(d, effect.task, effect.run, self.now)
            self.outgoing.append(
                Outgoing(
                    topology.WORK_EXCHANGE, env, {**route, topology.RUN_HEADER: str(effect.run)}
                )
            )
        elif isinstance(effect, core.Timer):
            env = Envelope(
                MessageType.RETRY_DUE,
                effect.task_id,
                d.office,
                d.dossier,
                self.now,
                {"retry": effect.retry, "run": effect.run},
            )
            self.outgoing.append(Outgoing(topology.retry_exchange(effect.delay_s), env, route))
            due = self.now + timedelta(seconds=effect.delay_s)
            w.timers.append((effect.task_id, effect.retry, effect.run, due))
        elif isinstance(effect, core.Instruct):
            w.instructions.append(
                InstructionRecord(
                    id=effect.id,
                    task_id=effect.task_id,
                    office=d.office,
                    dossier=d.dossier,
                    kind=effect.kind,
                    code=effect.code,
                    severity=effect.severity,
                    facts=effect.facts,
                    status=InstructionStatus.OPEN,
                    created_at=self.now,
                    raw=effect.raw[:RAW_KEEP_BYTES] if effect.raw else None,
                )
            )
        elif isinstance(effect, core.CloseInstructions):
            w.closes.extend(
                (f"{effect.task_id}/{n}", effect.resolution, self.now)
                for n in range(1, effect.failures + 1)
            )
        elif isinstance(effect, core.Decide):
            w.decisions.append((effect.action_id, effect.status, effect.reason, self.now))

    def finish(self) -> BatchWrite:
        """The batch's store write, tasks and dossiers in their final state."""
        # The batch number on every task written: a successor compares it with the last
        # confirmed batch to know whether a release may not have been published.
        self.write.tasks = [
            (t, e, {**f, "batch": self.batch}, h) for t, (e, f, h) in self._tasks.items()
        ]
        self.write.accepted = [t for t, (_, f, _) in self._tasks.items() if "accepted_at" in f]
        self.write.landed = [t for t, (_, f, _) in self._tasks.items() if f.get("status") in LANDED]
        # A dossier's state lives in its tasks; its document is for readers (blocked
        # dossiers, whether it has open tasks): rewritten only when that changes.
        for key, (d, epoch) in self._dossiers.items():
            if d.shape != d.saved:
                self.write.dossiers.append((key, epoch, dossier_fields(d, self.batch, self.now)))
                self.changed_dossiers[d.office].add(d.dossier)
                d.saved = d.shape
        return self.write


# While nobody listens to the change notices, how often a probe checks again.
PROBE_EVERY_S = 5.0
# The probe: a reader that gets it reads everything again (what went unsaid is unknown).
RESYNC = b'{"v":1,"resync":true}'


class Notices:
    """An owner's change notices, at most one per `every_s`, each naming all changes since.

    The first change after a quiet spell goes out with its batch; later ones wait for the
    interval and go out together, with a batch or from the owner's idle loop (`due`).
    Readers apply what changed at most once a second (`dispatcher.api.snapshot`), so a
    notice per batch (several a second under load, to every reader) told them nothing
    sooner; a notice is a broker message no task needs.

    While nobody listens (a notice came back unrouted, `heard(False)`), changes are not
    collected: at most every `probe_every_s`, if anything changed, a probe asks whoever
    listens by then to read everything again (`RESYNC`), which covers what went unsaid.
    """

    def __init__(
        self,
        every_s: float,
        probe_every_s: float = PROBE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every_s = every_s
        self._probe_every_s = probe_every_s
        self._clock = clock
        self._last = -max(every_s, probe_every_s)
        self._tasks: dict[str, set[str]] = defaultdict(set)
        self._dossiers: dict[str, set[str]] = defaultdict(set)
        self._listened = True  # until a notice comes back unrouted
        self._unsaid = False  # while nobody listens: something changed since the last probe

    def add(self, out: Collector) -> None:
        """What a written batch changed."""
        if not out.changed_tasks and not out.changed_dossiers:
            return
        if not self._listened:
            self._unsaid = True
            return
        for office, ids in out.changed_tasks.items():
            self._tasks[office] |= ids
        for office, names in out.changed_dossiers.items():
            self._dossiers[office] |= names

    def due(self) -> bytes | None:
        """The notice to publish now, if there are changes and the interval has passed."""
        now = self._clock()
        if not self._listened:
            if not self._unsaid or now - self._last < self._probe_every_s:
                return None
            self._unsaid = False
            self._last = now
            return RESYNC
        if not self._tasks and not self._dossiers:
            return None
        if now - self._last < self._every_s:
            return None
        self._last = now
        body = _notice(self._tasks, self._dossiers)
        self._tasks = defaultdict(set)
        self._dossiers = defaultdict(set)
        return body

    def heard(self, listened: bool) -> None:
        """Whether the last notice reached a queue (False: it came back unrouted)."""
        self._listened = listened
        if not listened:
            self._tasks = defaultdict(set)
            self._dossiers = defaultdict(set)


def _notice(tasks: Mapping[str, set[str]], dossiers: Mapping[str, set[str]]) -> bytes:
    """A change notice (`topology.CHANGES_EXCHANGE`): ids only, by office; a reader reads
    those documents again by `_id`."""
    body = {
        "v": 1,
        "tasks": {o: sorted(ids) for o, ids in tasks.items()},
        "dossiers": {o: sorted(names) for o, names in dossiers.items()},
    }
    return json.dumps(body, separators=(",", ":")).encode()
