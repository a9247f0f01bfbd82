"""The chaos run's report: a table of findings per fault, and the run's last line (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from dossierflow.tools.chaoscheck import COUNTERS, FaultWindow, Verdict


def per_fault(
    verdict: Verdict, faults: Sequence[FaultWindow], after_s: float = 15.0
) -> list[tuple[str, int, float, Counter[str]]]:
    """(fault, times, seconds, findings per counter) for findings during or soon after it."""
    rows: dict[str, tuple[int, float, Counter[str]]] = {}
    for w in faults:
        times, seconds, counts = rows.get(w.name, (0, 0.0, Counter()))
        rows[w.name] = (times + 1, seconds + (w.end - w.start), counts)
    near_none: Counter[str] = Counter()
    for f in verdict.findings:
        names = {w.name for w in faults if f.at is not None and w.start <= f.at <= w.end + after_s}
        for name in names:
            rows[name][2][f.counter] += 1
        if not names:
            near_none[f.counter] += 1
    table = [(name, t, s, c) for name, (t, s, c) in sorted(rows.items())]
    return [*table, ("(none near)", 0, 0.0, near_none)]


def render(
    verdict: Verdict, faults: Sequence[FaultWindow], tasks: int, elapsed_s: float
) -> list[str]:
    """The table per fault, a sample of findings, and the last line of the run."""
    heads = ["lost", "dbl", "order", "stuck", "dup", "unexpl", "unmail"]
    lines = [f"  {'fault':<22} {'times':>5} {'secs':>6} " + " ".join(f"{h:>6}" for h in heads)]
    for name, times, secs, counts in per_fault(verdict, faults):
        cells = " ".join(f"{counts[c]:>6}" for c in COUNTERS)
        lines.append(f"  {name:<22} {times:>5} {secs:>6.1f} {cells}")
    for counter in COUNTERS:  # a sample of each: the subjects to look up in the logs
        shown = [f for f in verdict.findings if f.counter == counter]
        lines += [f"  {counter}: {f.subject} {f.detail}" for f in shown[:5]]
    c = verdict.count
    lines.append(
        f"  {c('duplicated')} duplicated, {c('unexplained')} unexplained, {c('unmailed')} unmailed"
    )
    lines.append(
        f"dossierflow chaos: {tasks} tasks, {len(faults)} faults, {c('lost')} lost, "
        f"{c('double-booked')} double-booked, {c('out of order')} out of order, "
        f"{c('stuck')} stuck in {elapsed_s:.0f} s"
    )
    return lines
