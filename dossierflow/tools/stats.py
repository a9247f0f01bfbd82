"""Store commands a process sent, written as JSON for `dossierflow bench`, and their sums."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from store.counting import CommandCounter

# Where the processes of a bench write their counts; unset, nothing is counted.
STATS_DIR_ENV = "DOSSIERFLOW_STATS_DIR"


@dataclass
class Counts:
    """Commands and write statements by command name, of one process or summed."""

    commands: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        """Add another process's counts to these."""
        self.commands.update(other.commands)
        self.statements.update(other.statements)

    @property
    def total(self) -> int:
        """Every command, whatever its name."""
        return sum(self.commands.values())


def counts_to_json(counts: Counts) -> str:
    """The JSON document of a stats file."""
    return json.dumps({"commands": counts.commands, "statements": counts.statements})


def counts_from_json(text: str) -> Counts:
    """Counts read back from a stats file."""
    doc = json.loads(text)
    return Counts(Counter(doc.get("commands", {})), Counter(doc.get("statements", {})))


def load_counts(directory: Path, name: str) -> Counts:
    """The sum of every `<name>-<pid>.json` in `directory` (one per process)."""
    total = Counts()
    for path in sorted(directory.glob(f"{name}-*.json")):
        total.add(counts_from_json(path.read_text()))
    return total


def per_task_line(counts: Counts, tasks: int) -> str:
    """`23.90 per task: find 10.80, update 7.10 (7.10 statements), ...`, biggest first."""
    if tasks < 1:
        return "n/a"
    parts = []
    for name, n in sorted(counts.commands.items(), key=lambda kv: (-kv[1], kv[0])):
        part = f"{name} {n / tasks:.2f}"
        stmts = counts.statements.get(name, 0)
        if stmts and stmts != n:
            part += f" ({stmts / tasks:.2f} statements)"
        parts.append(part)
    return f"{counts.total / tasks:.2f} per task: " + (", ".join(parts) or "none")


class StatsFile:
    """Rewrites `<dir>/<name>-<pid>.json` from a counter every `interval` s and on close."""

    def __init__(
        self, counter: CommandCounter, directory: Path, name: str, interval: float = 1.0
    ) -> None:
        self._counter = counter
        self._path = directory / f"{name}-{os.getpid()}.json"
        self._interval = interval
        self._stop = threading.Event()
        directory.mkdir(parents=True, exist_ok=True)
        # A process killed hard keeps its last periodic figures, at most `interval` old.
        self._thread = threading.Thread(target=self._loop, name="stats-file", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.write()

    def write(self) -> None:
        """Write the figures now (whole file replaced, so a reader never sees half of it)."""
        counts = Counts(Counter(self._counter.commands()), Counter(self._counter.statements()))
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(counts_to_json(counts))
        os.replace(tmp, self._path)

    def close(self) -> None:
        """Stop the periodic writes and write the final figures."""
        self._stop.set()
        self._thread.join()
        self.write()


@contextmanager
def counting(name: str, environ: Mapping[str, str] | None = None) -> Iterator[list[object]]:
    """Store listeners for `Store.connect`: with DOSSIERFLOW_STATS_DIR set, they count there."""
    env = os.environ if environ is None else environ
    directory = env.get(STATS_DIR_ENV)
    if not directory:
        yield []
        return
    counter = CommandCounter()
    stats = StatsFile(counter, Path(directory), name)
    try:
        yield [counter]
    finally:
        stats.close()
