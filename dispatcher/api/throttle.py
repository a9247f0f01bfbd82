"""Failed logins: logged, and limited per client address and per token prefix.

The counts live in this process's memory: with several API replicas an attacker gets
the limit once per replica, and a restart forgets them. That bounds guessing (a token
carries 32 random bytes, so guessing was hopeless anyway) and stops a client that
hammers the login; it is not a ban list.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

import structlog

from dispatcher.api.problems import Problem

log = structlog.get_logger("dossierflow.api")
PREFIX_CHARS = 8  # "dft_" and four characters: enough to group guesses, never a secret
_MAX_KEYS = 100_000  # past this many, the oldest keys are forgotten (memory stays bounded)


class LoginThrottle:
    """Failed logins per key within a sliding window, thread-safe."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(address: str | None, token: str | None) -> tuple[str, ...]:
        """The counters a login attempt is charged to."""
        keys = [f"addr:{address or '?'}"]
        if token:
            keys.append(f"prefix:{token[:PREFIX_CHARS]}")
        return tuple(keys)

    def check(self, address: str | None, token: str | None) -> None:
        """A 429 problem (with Retry-After) while a counter of this attempt is at the limit."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key in self.keys(address, token):
                times = self._recent(key, now)
                if times is not None and len(times) >= self.limit:
                    wait = max(wait, times[0] + self.window_s - now)
        if wait > 0:
            log.warning("login.throttled", address=address, retry_after_s=math.ceil(wait))
            retry = str(max(1, math.ceil(wait)))
            headers = {"Retry-After": retry}
            raise Problem(429, "too-many-requests", "too many failed logins", headers)

    def failed(self, address: str | None, token: str | None, where: str) -> None:
        """Count and log a failed login (the token itself is never logged)."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= _MAX_KEYS:
                self._failures.pop(next(iter(self._failures)))
            for key in self.keys(address, token):
                self._failures.setdefault(key, deque()).append(now)
        log.warning("login.failed", address=address, where=where)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
