"""The page's copy of an office's tasks: read in one go, filtered and counted in memory.

Every list and the overview of an office come from one snapshot (all tasks, open
instructions, blocked dossiers), so a page costs no database query at all once it is
there. Only the first view of an office waits for its whole read (`Snapshots.warm` reads
the known offices when the server starts).

Keeping it current: with a live `ChangeFeed` (the sequencer's change notices), a view
reads again, in the background, only the tasks and dossiers changed since the last one,
by `_id`, plus the office's open instructions: proportional to what changed, not to the
office's history. A whole read is still made every `WHOLE_S` (what no notice names, such
as pruned tasks) and after the feed reconnected (notices may have been missed). Without a
feed, a view of a copy older than `FRESH_S` starts one whole read in the background. In
both cases the view is answered from the copy it has; the live part shows the new state
a moment later. The store's direct queries stay for what spans offices (support without
an office) and for single tasks, read by id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from dispatcher.api.changes import ChangeFeed, Pending
from store import InstructionRecord, TaskRecord
from store.monitoring import WAITING, Cursor, DossierSummary, Monitoring, Scope, TaskFilter
from workers.vocabulary import Severity, TaskStatus, worst

FRESH_S = 2.0  # without a change feed: a copy older than this is read again
WHOLE_S = 300.0  # with one: a whole read this often all the same
APPLY_EVERY_S = 1.0  # and what changed is read at most this often (each rebuilds the copy)
MAX_OFFICES = 100  # copies kept; the offices viewed least recently are dropped first
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """An office's tasks (newest first), open instructions by task and dossier rows."""

    taken: float
    cost: float  # seconds the read took: a slow read is repeated less often
    tasks: list[TaskRecord]
    instructions: dict[str, InstructionRecord]
    overview: list[DossierSummary]
    attention: list[TaskRecord] = field(default_factory=list)  # failed or instructed, newest first
    by_dossier: dict[str, list[TaskRecord]] = field(default_factory=dict)
    blocked: frozenset[tuple[str, str]] = frozenset()
    generation: int = 0  # the change feed's generation when the whole read began
    whole_at: float = 0.0  # when the last whole read began

    def visible(self, scope: Scope) -> list[TaskRecord]:
        """The tasks a scope may see (a dossier manager's dossiers only)."""
        if scope.dossiers is None:
            return self.tasks
        wanted = set(scope.dossiers)
        return [t for t in self.tasks if t.dossier in wanted]

    def page(
        self, scope: Scope, f: TaskFilter, after: Cursor | None, limit: int
    ) -> tuple[list[TaskRecord], Cursor | None]:
        """A page of the tasks matching the filter, as `Monitoring.tasks` gives it."""
        found: list[TaskRecord] = []
        for t in self._candidates(scope, f):
            if after is not None and (t.submitted_at, t.id) >= after:
                continue
            if self._matches(t, f):
                found.append(t)
                if len(found) > limit:
                    break
        more = len(found) > limit
        found = found[:limit]
        return found, ((found[-1].submitted_at, found[-1].id) if more and found else None)

    def _candidates(self, scope: Scope, f: TaskFilter) -> list[TaskRecord]:
        """The smallest list that holds every match: the default view checks only a few."""
        if f.dossier is not None:
            mine = scope.dossiers is None or f.dossier in scope.dossiers
            return self.by_dossier.get(f.dossier, []) if mine else []
        if f.needs_attention or f.has_instruction or f.severity is not None:
            if scope.dossiers is None:
                return self.attention
            wanted = set(scope.dossiers)
            return [t for t in self.attention if t.dossier in wanted]
        return self.visible(scope)

    def _matches(self, t: TaskRecord, f: TaskFilter) -> bool:
        instruction = self.instructions.get(t.id)
        checks = (
            not f.statuses or t.status in f.statuses,
            f.kind is None or t.kind == f.kind,
            f.dossier is None or t.dossier == f.dossier,
            f.submitted_from is None or t.submitted_at >= f.submitted_from,
            f.submitted_to is None or t.submitted_at < f.submitted_to,
            f.has_instruction is None or (instruction is not None) == f.has_instruction,
            f.severity is None or (instruction is not None and instruction.severity == f.severity),
            not f.needs_attention or t.status is TaskStatus.FAILED or instruction is not None,
        )
        return all(checks)

    def dossiers(self, scope: Scope) -> list[DossierSummary]:
        """The overview's rows a scope may see."""
        if scope.dossiers is None:
            return self.overview
        wanted = set(scope.dossiers)
        return [d for d in self.overview if d.dossier in wanted]


def _newest_first(t: TaskRecord) -> tuple[datetime, str]:
    return (t.submitted_at, t.id)


def build(
    tasks: list[TaskRecord],
    instructions: list[InstructionRecord],
    blocked: set[tuple[str, str]],
    *,
    ordered: bool = False,
) -> Snapshot:
    """Sort (unless `ordered`: newest first already), index and count what one read gave."""
    if not ordered:
        tasks.sort(key=_newest_first, reverse=True)
    newest: dict[str, InstructionRecord] = {}
    for i in sorted(instructions, key=lambda i: (i.created_at, i.id)):
        newest[i.task_id] = i
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in tasks:
        counts[(t.office, t.dossier)][t.status.value] += 1
    severities: dict[tuple[str, str], list[Severity]] = defaultdict(list)
    for i in instructions:
        severities[(i.office, i.dossier)].append(i.severity)
    rows = []
    for key in sorted(set(counts) | set(severities) | blocked):
        by_status, colours = counts.get(key, {}), severities.get(key, [])
        rows.append(
            DossierSummary(
                office=key[0],
                dossier=key[1],
                stripe=worst(colours) or "",
                waiting=sum(by_status.get(s.value, 0) for s in WAITING),
                running=by_status.get(TaskStatus.RUNNING.value, 0),
                failed=by_status.get(TaskStatus.FAILED.value, 0),
                blocked=key in blocked,
                open_instructions=len(colours),
            )
        )
    attention = [t for t in tasks if t.status is TaskStatus.FAILED or t.id in newest]
    by_dossier: dict[str, list[TaskRecord]] = defaultdict(list)
    for t in tasks:
        by_dossier[t.dossier].append(t)
    return Snapshot(
        time.monotonic(), 0.0, tasks, newest, rows, attention, dict(by_dossier), frozenset(blocked)
    )


def _merged(
    known: list[TaskRecord], fresh: dict[str, TaskRecord], changed: set[str]
) -> tuple[list[TaskRecord], bool]:
    """The copy's tasks with the changed ones read again (gone: pruned); whether in order.

    Changed tasks keep their place (their submission time does not change); new ones are
    the newest as a rule and go in front, so the usual change needs no sort.
    """
    merged = [fresh.get(t.id, t) for t in known if t.id not in changed or t.id in fresh]
    have = {t.id for t in known}
    new = sorted((t for t in fresh.values() if t.id not in have), key=_newest_first, reverse=True)
    if not new:
        return merged, True
    if not merged or _newest_first(new[-1]) > _newest_first(merged[0]):
        return new + merged, True
    return new + merged, False


@dataclass
class Snapshots:
    """The latest snapshot of each office, kept current in the background when a page asks."""

    monitoring: Monitoring
    fresh_s: float = FRESH_S
    changes: ChangeFeed | None = None
    whole_s: float = WHOLE_S
    apply_every_s: float = APPLY_EVERY_S
    _latest: dict[str, Snapshot] = field(default_factory=dict)
    _loading: set[str] = field(default_factory=set)
    _viewed: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    whole_reads: int = 0  # for figures and tests
    change_reads: int = 0

    def of(self, office: str) -> Snapshot:
        """The office's snapshot; the first one is read now, later ones in the background."""
        feed = self.changes
        with self._lock:
            now = time.monotonic()
            self._viewed[office] = now
            known = self._latest.get(office)
            busy = office in self._loading
            work: Callable[[], object] | None = None
            if known is None:
                pass
            elif feed is not None and feed.live and known.generation == feed.generation:
                if now - known.whole_at > self.whole_s:
                    work = lambda: self._load(office)  # noqa: E731
                elif not busy and now - known.taken >= self.apply_every_s:
                    pending = feed.take(office)
                    if pending:
                        work = lambda: self._apply(office, pending)  # noqa: E731
            # Never spend more than a third of the time reading: at 10,000 tasks on a server
            # that scans, a read takes seconds and the copy is refreshed less often.
            elif now - known.taken > max(self.fresh_s, 2 * known.cost):
                work = lambda: self._load(office)  # noqa: E731
            start = work is not None and not busy
            if start:
                self._loading.add(office)
        if known is None:
            return self._load(office)
        if start and work is not None:
            threading.Thread(target=self._background, args=(office, work), daemon=True).start()
        return known

    def warm(self, offices: list[str]) -> None:
        """Read these offices' copies in the background (at start: first views are quick)."""

        def read_all() -> None:
            for office in offices[:MAX_OFFICES]:
                with self._lock:
                    if office in self._latest or office in self._loading:
                        continue
                    self._loading.add(office)
                self._background(office, lambda o=office: self._load(o))  # type: ignore[misc]

        threading.Thread(target=read_all, name="page-warm", daemon=True).start()

    def forget(self, office: str, task_id: str | None = None) -> None:
        """After an action on `task_id`: the next view reads it (or the office) again."""
        feed = self.changes
        if feed is not None and task_id is not None:
            feed.mark(office, {task_id})
            return
        with self._lock:
            known = self._latest.get(office)
            if known is not None:
                self._latest[office] = replace(known, taken=0.0, cost=0.0)

    def _load(self, office: str) -> Snapshot:
        began = time.monotonic()
        generation = self.changes.generation if self.changes is not None else 0
        if self.changes is not None:
            self.changes.take(office)  # this read sees them; later ones stay pending
        snapshot = build(*self.monitoring.everything(Scope(office)))
        # Its age counts from the start of the read: what changed during it may be missing.
        snapshot = replace(
            snapshot,
            taken=began,
            cost=time.monotonic() - began,
            generation=generation,
            whole_at=began,
        )
        self.whole_reads += 1
        self._keep(office, snapshot)
        return snapshot

    def _apply(self, office: str, pending: Pending) -> None:
        """Read again what changed (by `_id`) and rebuild the copy from it."""
        with self._lock:
            known = self._latest.get(office)
        if known is None:
            return
        began = time.monotonic()
        fresh = {t.id: t for t in self.monitoring.tasks_by_id(sorted(pending.tasks))}
        tasks, ordered = _merged(known.tasks, fresh, pending.tasks)
        blocked = set(known.blocked)
        if pending.dossiers:
            now_blocked = self.monitoring.blocked_among(office, sorted(pending.dossiers))
            blocked -= {(office, d) for d in pending.dossiers}
            blocked |= {(office, d) for d in now_blocked}
        instructions = self.monitoring.open_instructions(Scope(office))
        snapshot = build(tasks, instructions, blocked, ordered=ordered)
        snapshot = replace(
            snapshot,
            taken=began,
            cost=time.monotonic() - began,
            generation=known.generation,
            whole_at=known.whole_at,
        )
        self.change_reads += 1
        self._keep(office, snapshot)

    def _keep(self, office: str, snapshot: Snapshot) -> None:
        with self._lock:
            known = self._latest.get(office)
            if known is None or known.taken < snapshot.taken:
                self._latest[office] = snapshot
            while len(self._latest) > MAX_OFFICES:
                oldest = min(self._latest, key=lambda o: self._viewed.get(o, 0.0))
                del self._latest[oldest]
                self._viewed.pop(oldest, None)

    def _background(self, office: str, work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:  # the next view tries again; the page keeps its last copy meanwhile
            _log.warning("page snapshot of office %s not refreshed", office, exc_info=True)
            if self.changes is not None:
                # What it was to read is lost with it: read the whole office next time.
                with self._lock:
                    known = self._latest.get(office)
                    if known is not None:
                        self._latest[office] = replace(known, whole_at=0.0, taken=0.0)
        finally:
            with self._lock:
                self._loading.discard(office)
