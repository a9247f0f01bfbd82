"""No office starves another: submissions are admitted per office, by rate and by backlog.

Every task an office submits goes through the control partition of its dossier, in line
with every other office's commands there, and a partition owner accepts them at the
store's pace. So an office may submit `burst` tasks at once and `rate` a second on
average (a token bucket; a batch larger than the burst passes when the bucket is full
and leaves it in debt), and may have at most `cap` tasks submitted and not finished.
Past either, the answer is a 429 problem with Retry-After and nothing is stored.

The buckets live in this process's memory: each API replica admits the rate once (set
the rate divided by the replicas), and no submission costs a store round trip for it.
The waiting count is the office's running totals (`store.load`), read by `_id` at most
once per `refresh_s` per office, plus what this process admitted since that read.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from broker.topology import partition_queue
from dispatcher.api.problems import Problem
from dispatcher.settings import Settings
from store import Store

log = structlog.get_logger("dossierflow.api")
CAP_RETRY_S = 5  # finished tasks free room at the pipeline's pace: ask again in a while
# Every partition a deployment can have (DOSSIERFLOW_PARTITIONS is 1 to 99): counts of a
# partition that was dropped still count.
PARTITIONS = [partition_queue(i) for i in range(99)]


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Waiting:
    stored: int  # the office's waiting count as last read
    at: float  # when it was read
    admitted: int = 0  # admitted by this process since


class Admission:
    """The per-office rate limit and waiting cap of one API process, thread-safe."""

    def __init__(
        self,
        rate: float,
        burst: int,
        cap: int,
        waiting: Callable[[str], int],
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.cap = cap
        self._read = waiting
        self._refresh_s = refresh_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._waiting: dict[str, _Waiting] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, settings: Settings, store: Store) -> Admission:
        """The admission the settings describe, counting in the store."""
        load = store.load
        return cls(
            settings.submit_rate,
            settings.submit_burst,
            settings.office_waiting_cap,
            lambda office: load.waiting(office, PARTITIONS),
        )

    def admit(self, office: str, tasks: int) -> None:
        """Take `tasks` submissions of `office`, or raise a 429 problem and take nothing."""
        waiting = self.waiting(office)
        with self._lock:
            now = self._clock()
            if waiting + tasks > self.cap:
                log.warning("submit.capped", office=office, waiting=waiting, tasks=tasks)
                detail = (
                    f"the office has {waiting} tasks waiting and may have {self.cap}: "
                    f"{tasks} more must wait until some finish"
                )
                headers = {"Retry-After": str(CAP_RETRY_S)}
                raise Problem(429, "too-many-waiting", detail, headers)
            bucket = self._buckets.setdefault(office, _Bucket(float(self.burst), now))
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            need = min(tasks, self.burst)
            if bucket.tokens + 1e-9 < need:  # not refused for a rounding error
                retry = max(1, math.ceil((need - bucket.tokens) / self.rate))
                log.warning("submit.throttled", office=office, tasks=tasks, retry_after_s=retry)
                detail = (
                    f"the office may submit {self.burst} tasks at once and {self.rate:g} a second"
                )
                raise Problem(429, "too-many-requests", detail, {"Retry-After": str(retry)})
            bucket.tokens -= tasks
            self._waiting[office].admitted += tasks

    def waiting(self, office: str) -> int:
        """The office's tasks submitted and not finished, as this process knows them."""
        with self._lock:
            known = self._waiting.get(office)
            if known is not None and self._clock() - known.at < self._refresh_s:
                return known.stored + known.admitted
        at = self._clock()
        stored = self._read(office)  # outside the lock: other offices do not wait for it
        with self._lock:
            self._waiting[office] = _Waiting(stored, at)
        return stored
