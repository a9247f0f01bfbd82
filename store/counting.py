"""Count the MongoDB commands a process sends, by command name (pymongo command monitoring)."""

from __future__ import annotations

import threading
from collections import Counter

from pymongo import monitoring

# The array each write command carries its statements in: a bulk is one command of many.
_STATEMENTS = {"insert": "documents", "update": "updates", "delete": "deletes"}


class CommandCounter(monitoring.CommandListener):
    """Counts started commands and the statements of write commands; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commands: Counter[str] = Counter()
        self._statements: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Count one command (a started command is a round trip, answered or not)."""
        name = event.command_name
        field = _STATEMENTS.get(name)
        items = event.command.get(field) if field else None
        with self._lock:
            self._commands[name] += 1
            if isinstance(items, list):
                self._statements[name] += len(items)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing: counted when started."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing: counted when started."""

    def commands(self) -> dict[str, int]:
        """Commands sent so far, by command name."""
        with self._lock:
            return dict(self._commands)

    def statements(self) -> dict[str, int]:
        """Statements of the write commands sent so far (documents inserted, updates...)."""
        with self._lock:
            return dict(self._statements)
