"""Graceful stop: SIGTERM and SIGINT set an event that long-running loops watch."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

log = structlog.get_logger("dossierflow")


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: finish the current work, take no new one."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal.received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
