"""The API's Prometheus metrics: what only the store knows, read at most every interval.

Blocked dossiers, open instructions and the mail outbox are facts of the database, not
of any process's memory: the API reads them when Prometheus scrapes, at most once per
`metrics_store_interval_s` (a scrape in between gets the last reading), so scrapers
cannot add load on the store however often they come. Several API replicas report the
same values: aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from broker.messages import utcnow
from store import Store, StoreError
from workers.vocabulary import InstructionStatus, Severity

# Pending mails counted per reading; a backlog past it reads as this many (and alerts).
OUTBOX_COUNT_LIMIT = 1000


@dataclass
class Reading:
    """One reading of the store."""

    at: float = 0.0  # monotonic time of the reading, 0 before the first one
    ok: bool = False
    seconds: float = 0.0  # what the reading cost
    blocked: int = 0
    open_instructions: dict[Severity, int] = field(default_factory=dict)
    oldest_instruction_s: dict[Severity, float] = field(default_factory=dict)
    outbox_pending: int = 0
    outbox_oldest_s: float = 0.0


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def read_store(store: Store) -> Reading:
    """Blocked dossiers, open instructions by severity and pending mails, as of now."""
    began = time.monotonic()
    now = utcnow()
    reading = Reading(ok=True, open_instructions=dict.fromkeys(Severity, 0))
    reading.blocked = len(store.dossiers.blocked())
    for i in store.instructions.find(status=InstructionStatus.OPEN):
        severity = i.severity  # decoded by the store: an unknown one reads as red
        reading.open_instructions[severity] += 1
        age = _age(now, i.created_at)
        reading.oldest_instruction_s[severity] = max(
            reading.oldest_instruction_s.get(severity, 0.0), age
        )
    pending = store.outbox.pending(limit=OUTBOX_COUNT_LIMIT)
    reading.outbox_pending = len(pending)
    reading.outbox_oldest_s = _age(now, pending[0].created_at) if pending else 0.0
    reading.seconds = time.monotonic() - began
    reading.at = time.monotonic()
    return reading


class StoreGauges(Collector):
    """A collector whose gauges come from a rate-limited store reading."""

    def __init__(self, store: Store, interval_s: float) -> None:
        self._store = store
        self._interval = interval_s
        self._lock = threading.Lock()
        self._last = Reading()

    def reading(self) -> Reading:
        """The last reading, taken again first when it is older than the interval."""
        with self._lock:  # one reading at a time; concurrent scrapes share it
            if self._last.at and time.monotonic() - self._last.at < self._interval:
                return self._last
            try:
                self._last = read_store(self._store)
            except StoreError:
                # Keep the last values, say they are stale; try again next interval.
                self._last.ok, self._last.at = False, time.monotonic()
            return self._last

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, from the (possibly cached) reading."""
        r = self.reading()
        yield GaugeMetricFamily(
            "dossierflow_store_reading_ok",
            "1 when the last store reading for these gauges succeeded.",
            value=int(r.ok),
        )
        yield GaugeMetricFamily(
            "dossierflow_store_reading_seconds",
            "What the last store reading for these gauges cost.",
            value=r.seconds,
        )
        yield GaugeMetricFamily(
            "dossierflow_dossiers_blocked",
            "Dossiers blocked by a failed task, as the store has them.",
            value=r.blocked,
        )
        opened = GaugeMetricFamily(
            "dossierflow_instructions_open",
            "Open instructions by severity (orange: the accountant acts, red: support).",
            labels=["severity"],
        )
        oldest = GaugeMetricFamily(
            "dossierflow_instruction_oldest_open_seconds",
            "Age of the oldest open instruction by severity (0: none open).",
            labels=["severity"],
        )
        for severity in Severity:
            opened.add_metric([severity.value], r.open_instructions.get(severity, 0))
            oldest.add_metric([severity.value], r.oldest_instruction_s.get(severity, 0.0))
        yield opened
        yield oldest
        yield GaugeMetricFamily(
            "dossierflow_mail_outbox_pending",
            f"Mails waiting in the outbox (counted up to {OUTBOX_COUNT_LIMIT}).",
            value=r.outbox_pending,
        )
        yield GaugeMetricFamily(
            "dossierflow_mail_outbox_oldest_pending_seconds",
            "Age of the oldest mail waiting in the outbox (0: none).",
            value=r.outbox_oldest_s,
        )


def install(app: FastAPI, store: Store, interval_s: float) -> CollectorRegistry:
    """Serve GET /metrics on the app (outside the API's schema, no login)."""
    registry = CollectorRegistry()
    registry.register(StoreGauges(store, interval_s))

    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return registry
