"""Prometheus metrics of a connector, and the parts every process's metrics share.

Counters and histograms live in memory and cost a few microseconds per task; nothing
here reads the store or the broker. Label values are bounded: task kinds and error codes
come from closed sets, offices appear only when asked for and then up to a limit, and
anything past the limit is counted under `other`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from workers import handlers as _handlers  # noqa: F401  (registers the task kinds)
from workers.kinds import kinds
from workers.vocabulary import ErrorCode

OTHER = "other"
# Seconds; the submit-to-start delay spans a quick hand-over to a long backlog.
DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class BoundedLabel:
    """Maps label values to themselves while they are few, and to `other` past `limit`.

    `known`, when given, is the closed set of allowed values: anything else is `other`
    at once (a kind or code read from a message can be anything).
    """

    def __init__(self, limit: int, known: frozenset[str] | None = None) -> None:
        self._limit = limit
        self._known = known
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        """The label value to use for `value`."""
        if self._known is not None:
            return value if value in self._known else OTHER
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


def kind_label() -> BoundedLabel:
    """Task kinds: the registered ones, anything else is `other`."""
    return BoundedLabel(0, frozenset(kinds()))


def code_label() -> BoundedLabel:
    """Error codes: the known ones, anything else is `other`."""
    return BoundedLabel(0, frozenset(c.value for c in ErrorCode))


def office_label(enabled: bool, limit: int) -> BoundedLabel | None:
    """Offices as a label only when enabled, and then at most `limit` of them."""
    return BoundedLabel(limit) if enabled else None


def submitted_at_of(task_id: str) -> datetime | None:
    """The submission time a task id carries (see `dispatcher.client.new_task_id`).

    Ids are 32 hex digits starting with milliseconds since the epoch; ids of another
    form (made elsewhere) give None and are not timed.
    """
    if len(task_id) != 32:
        return None
    try:
        millis = int(task_id[:12], 16)
    except ValueError:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def serve(registry: CollectorRegistry, port: int, addr: str) -> int:
    """Serve `registry` on http://addr:port/metrics from a daemon thread; the port bound."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return int(server.server_port)


class WorkerMetrics:
    """What a connector counts: tasks run, failures, run time and submit-to-start delay."""

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
        self._office = office_label(per_office, office_limit)
        extra = ("office",) if per_office else ()
        r = self.registry
        self.tasks = Counter(
            "dossierflow_worker_tasks",
            "Task attempts a connector finished, by kind and outcome "
            "(done, failed, transient, unreadable).",
            ("kind", "outcome", *extra),
            registry=r,
        )
        self.failures = Counter(
            "dossierflow_worker_failures",
            "Failed task attempts by error code (transient ones included).",
            ("code", *extra),
            registry=r,
        )
        self.run_seconds = Histogram(
            "dossierflow_task_run_seconds",
            "Time a connector spent running a task attempt (quick retries included).",
            ("kind",),
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.start_delay = Histogram(
            "dossierflow_task_start_delay_seconds",
            "From submission to the first start of a task on a connector.",
            ("kind",),
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.slots = Gauge("dossierflow_worker_slots", "Parallel slots.", registry=r)
        self.busy = Gauge("dossierflow_worker_busy_slots", "Slots running a task.", registry=r)

    def _labels(self, office: str) -> tuple[str, ...]:
        return (self._office(office),) if self._office is not None else ()

    def started(
        self, task_id: str, kind: str, run: int, attempt: int, now: datetime | None = None
    ) -> None:
        """A slot begins an attempt; the first one of a task is timed from its submission."""
        self.busy.inc()
        if run != 1 or attempt != 1:
            return  # a retry or a redelivery: its delay is not the submission's
        submitted = submitted_at_of(task_id)
        if submitted is not None:
            delay = max(0.0, ((now or datetime.now(UTC)) - submitted).total_seconds())
            self.start_delay.labels(self._kind(kind)).observe(delay)

    def finished(
        self, office: str, kind: str, outcome: str, seconds: float, code: str | None = None
    ) -> None:
        """A slot finished an attempt: its outcome, run time and error code if it failed."""
        self.busy.dec()
        label = self._kind(kind)
        extra = self._labels(office)
        self.tasks.labels(label, outcome, *extra).inc()
        self.run_seconds.labels(label).observe(seconds)
        if code is not None:
            self.failures.labels(self._code(code), *extra).inc()

    def unreadable(self, office: str) -> None:
        """A work message no connector can run (it is dead-lettered)."""
        self.tasks.labels(OTHER, "unreadable", *self._labels(office)).inc()
