"""When and how long the sweeper prunes: store/retention.py decides what goes.

Pruning runs in the dispatcher that holds the sweeper lease, and only while it also holds
the `retention` lease, renewed before every delete command: whoever prunes (a dispatcher
or `dossierflow prune`), one prunes at a time. A pass stops after its time budget so the
sweeper goes back to its own work; a pass cut short is continued at the next sweep, a
complete one is repeated after `retention_interval_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from broker.messages import utcnow
from dispatcher.settings import Settings
from store import Store, StoreError
from store.retention import PruneReport

log = structlog.get_logger("dossierflow.retention")

RETENTION_LEASE = "retention"


class Pruner:
    """Prunes what is older than the retention, in bounded passes."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        name: str,
        stop: threading.Event,
        *,
        budget_s: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._retention = store.retention(batch=settings.retention_batch)
        self._sequencing = store.sequencing
        self._name = name
        self._stop = stop
        # Within the sweeper lease (3 sweep intervals) with room for the sweep itself.
        self._budget_s = settings.sweep_interval_s if budget_s is None else budget_s
        self._clock = clock
        self._next = 0.0  # monotonic time of the next pass
        self._indexed = False

    @property
    def enabled(self) -> bool:
        """Whether a retention is set (0 days keeps everything)."""
        return self._settings.retention_days > 0

    def cutoff(self) -> datetime:
        """What finished before this instant goes."""
        return self._clock() - timedelta(days=self._settings.retention_days)

    def run_if_due(self, sleep: Callable[[float], None] | None = None) -> PruneReport | None:
        """Prune if a pass is due; None when none ran. Store errors are logged, not raised.

        `sleep` waits between deletes; the sweeper passes its broker connection's, which
        keeps the connection's heartbeats going meanwhile.
        """
        if not self.enabled or time.monotonic() < self._next:
            return None
        try:
            report = self.run(sleep=sleep)
        except StoreError as exc:
            log.warning("retention.failed", error=str(exc))
            self._next = time.monotonic() + self._settings.sweep_interval_s
            return None
        if report is not None:
            delay = self._settings.retention_interval_s if report.complete else 0.0
            self._next = time.monotonic() + delay
        return report

    def run(
        self,
        *,
        dry_run: bool = False,
        budget_s: float | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> PruneReport | None:
        """One pass; None when another process holds the retention lease."""
        if not self._indexed:
            self._retention.ensure_indexes()
            self._indexed = True
        if not dry_run and not self._lease():
            log.info("retention.lease_held_elsewhere", name=self._name)
            return None
        started = time.monotonic()
        budget = self._budget_s if budget_s is None else budget_s
        pause_s = self._settings.retention_pause_ms / 1000

        def pause() -> bool:
            if sleep is not None:
                sleep(pause_s)
            stopped = self._stop.is_set() if sleep is not None else self._stop.wait(pause_s)
            if stopped or time.monotonic() - started > budget:
                return False
            return self._lease()  # lost to another process: stop, it goes on

        cutoff = self.cutoff()
        report = self._retention.prune(cutoff, pause, dry_run=dry_run)
        log.info(
            "retention.pass",
            dry_run=dry_run,
            cutoff=cutoff.isoformat(),
            seconds=round(time.monotonic() - started, 3),
            **report.as_dict(),
        )
        return report

    def _lease(self) -> bool:
        now = utcnow()
        until = now + timedelta(seconds=max(60.0, 3 * self._budget_s))
        return self._sequencing.lease(RETENTION_LEASE, self._name, now, until)
