"""Prometheus metrics of the dispatcher: what the sequencer decides, and what it holds.

Counters are fed from the effects of each message the rules handle (no store read);
the gauges are computed when Prometheus scrapes, from tallies the partition owners keep
of the dossiers in their memory, and from the partition depths the sweeper reads anyway.
Those tallies cover the dossiers an owner has met since it took its partitions: a
dossier untouched since a takeover is counted again at its next message (the API's
store gauges, `dispatcher.api.metrics`, see every blocked dossier).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dispatcher import core
from workers.metrics import BoundedLabel, code_label, kind_label, office_label
from workers.vocabulary import TaskStatus

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# What a transition to a status counts: finished by status, submitted, or a retry.
COUNTED = {
    TaskStatus.DONE: "done",
    TaskStatus.CANCELLED: "cancelled",
    TaskStatus.SKIPPED: "skipped",
    TaskStatus.FAILED: "failed",  # for good: it blocks its dossier (a restart may run it again)
    TaskStatus.WAITING: "submitted",  # accepted (a restart goes back to waiting too)
    TaskStatus.RETRY_WAIT: "retries",
}


class Tally:
    """Blocked dossiers, waiting tasks and retry timers among one owner's dossiers.

    Updated after each batch for the dossiers it touched, in O(1) each: only a dossier's
    head can be anything but waiting, so its other open tasks are all waiting.
    """

    def __init__(self) -> None:
        self._of: dict[str, tuple[bool, int, bool]] = {}
        self.blocked = 0
        self.waiting = 0
        self.retrying = 0
        self.partitions = 0  # partitions its owner is active on

    def update(self, dossiers: Iterable[core.Dossier]) -> None:
        """Take the current state of these dossiers into account."""
        for d in dossiers:
            head = d.head
            now = (
                d.blocked,
                len(d.tasks) - (1 if d.active else 0),
                head is not None and head.status is TaskStatus.RETRY_WAIT,
            )
            before = self._of.get(d.key, (False, 0, False))
            if now == before:
                continue
            self.blocked += now[0] - before[0]
            self.waiting += now[1] - before[1]
            self.retrying += now[2] - before[2]
            if now == (False, 0, False):
                self._of.pop(d.key, None)
            else:
                self._of[d.key] = now


class SequencerMetrics:
    """The dispatcher's metrics; owners report to it, gauges read their tallies."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        per_office: bool = False,
        office_limit: int = 50,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._kind = kind_label()
        self._code = code_label()
        self._office: BoundedLabel | None = office_label(per_office, office_limit)
        self._tallies: dict[str, Tally] = {}
        # Children by (what, label, office label or "", severity): as bounded as the labels.
        self._children: dict[tuple[str, str, str, str], Any] = {}
        self._lock = threading.Lock()
        extra = ("office",) if per_office else ()
        r = self.registry
        self.submitted = Counter(
            "dossierflow_tasks_submitted",
            "Tasks the sequencer accepted into their dossier's order, by kind.",
            ("kind", *extra),
            registry=r,
        )
        self.finished = Counter(
            "dossierflow_tasks_finished",
            "Tasks that finished, by kind and status (done, cancelled, skipped, "
            "failed: failed for good, blocking the dossier).",
            ("kind", "status", *extra),
            registry=r,
        )
        self.failures = Counter(
            "dossierflow_task_failures",
            "Failures for good by error code and severity (each makes an instruction).",
            ("code", "severity", *extra),
            registry=r,
        )
        self.retries = Counter(
            "dossierflow_task_retries",
            "Delayed retries scheduled after a transient failure, by kind.",
            ("kind",),
            registry=r,
        )
        self.batch_size = Histogram(
            "dossierflow_sequencer_batch_size",
            "Control messages handled per batch by a partition owner.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.backlog = Gauge(
            "dossierflow_partition_backlog",
            "Messages ready in a control partition (read by the process holding the sweeper "
            "lease, every sweep).",
            ("partition",),
            registry=r,
        )
        self.consumers = Gauge(
            "dossierflow_partition_consumers",
            "Consumers (active and standby) of a control partition (as the backlog).",
            ("partition",),
            registry=r,
        )
        self._held(r, "dossierflow_blocked_dossiers", "Blocked dossiers", lambda t: t.blocked)
        self._held(r, "dossierflow_waiting_tasks", "Waiting tasks", lambda t: t.waiting)
        self._held(
            r,
            "dossierflow_retry_timers_pending",
            "Tasks waiting for a retry timer",
            lambda t: t.retrying,
        )
        Gauge(
            "dossierflow_partitions_held",
            "Control partitions this process is the active consumer of.",
            registry=r,
        ).set_function(lambda: sum(t.partitions for t in self.tallies()))

    def _held(self, r: CollectorRegistry, name: str, what: str, of: Callable[[Tally], int]) -> None:
        gauge = Gauge(name, f"{what} among the dossiers this process's owners hold.", registry=r)
        gauge.set_function(lambda: sum(of(t) for t in self.tallies()))

    # -- owners ---------------------------------------------------------------------
    def tally(self, owner: str) -> Tally:
        """A fresh tally for an owner that became active (replacing its previous one)."""
        with self._lock:
            self._tallies[owner] = Tally()
            return self._tallies[owner]

    def drop(self, owner: str) -> None:
        """An owner stopped: what it held is no longer this process's."""
        with self._lock:
            self._tallies.pop(owner, None)

    def tallies(self) -> list[Tally]:
        """The tallies of the owners running now."""
        with self._lock:
            return list(self._tallies.values())

    # -- what happened ----------------------------------------------------------------
    def observe(self, d: core.Dossier, kind: str | None, effects: list[core.Effect]) -> None:
        """Count the transitions in the effects of one message of dossier `d`.

        `kind` is the kind of the task the message is about, read before the rules ran
        (a finished task has left the dossier by then).
        """
        for effect in effects:
            if isinstance(effect, core.TaskChange):
                for entry, _at, status, _note in effect.history:
                    counted = COUNTED.get(status)
                    if counted is None or (counted == "submitted" and "/accepted" not in entry):
                        continue  # released, started, or restarted: not counted
                    task = d.tasks.get(effect.task_id)
                    label = self._kind(task.kind if task is not None else kind or "")
                    self._count(counted, label, d.office)
            elif isinstance(effect, core.Instruct):
                self._count("failures", self._code(effect.code), d.office, effect.severity)

    def _count(self, what: str, label: str, office: str, severity: str = "") -> None:
        """Increment one child, kept by its labels (`labels()` costs more than `inc()`)."""
        office = self._office(office) if self._office is not None else ""
        key = (what, label, office, severity)
        child = self._children.get(key)
        if child is None:
            extra = (office,) if self._office is not None else ()
            if what == "submitted":
                child = self.submitted.labels(label, *extra)
            elif what == "retries":
                child = self.retries.labels(label)
            elif what == "failures":
                child = self.failures.labels(label, severity, *extra)
            else:
                child = self.finished.labels(label, what, *extra)
            self._children[key] = child
        child.inc()

    def partitions(self, depths: dict[str, tuple[int, int]]) -> None:
        """The sweeper's reading of each partition: (messages ready, consumers)."""
        for queue, (ready, consumers) in depths.items():
            self.backlog.labels(queue).set(ready)
            self.consumers.labels(queue).set(consumers)

    def forget_partitions(self) -> None:
        """Another process holds the sweeper lease: its readings are the current ones."""
        self.backlog.clear()
        self.consumers.clear()
