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


def exit_on_sigterm() -> None:
    """For the tools that start processes of their own (demo, bench, chaos): SIGTERM ends
    them as Ctrl-C does, through their `finally`, which stops what they started. Killed
    with the default action instead, they left their dispatchers, connectors and mailer
    running against the services, and a later run on the same services met them."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
