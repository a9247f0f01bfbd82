"""A one-line progress bar on stderr (redrawn in a terminal, a few lines otherwise)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Shows `done/total` with a bar; in a pipe or CI log prints at most every 10%."""

    def __init__(self, label: str, total: int, width: int = 30) -> None:
        self._label, self._total, self._width = label, max(total, 1), width
        self._tty = sys.stderr.isatty()
        self._last_decile = -1
        self._start = time.monotonic()

    def update(self, done: int, extra: str = "") -> None:
        """Redraw with `done` items finished."""
        share = min(done / self._total, 1.0)
        if self._tty:
            filled = int(share * self._width)
            bar = "#" * filled + "-" * (self._width - filled)
            elapsed = time.monotonic() - self._start
            line = f"\r{self._label} [{bar}] {done}/{self._total} {elapsed:5.1f}s {extra}"
            sys.stderr.write(line.ljust(100))
            sys.stderr.flush()
        elif int(share * 10) > self._last_decile:
            self._last_decile = int(share * 10)
            sys.stderr.write(f"{self._label}: {done}/{self._total} {extra}\n")

    def close(self) -> None:
        """End the bar's line."""
        if self._tty:
            sys.stderr.write("\n")
