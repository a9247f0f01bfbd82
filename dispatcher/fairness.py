"""Which buffered control messages a partition owner handles next, fairly across offices.

A partition carries the commands and events of every office whose dossiers hash to it,
in arrival order. Taken first come first served, a burst of one office (thousands of
submissions, then their events) fills batch after batch, and a task of another office
waits behind all of it. So when the owner's buffer holds a heavy office and light ones
(at most `batch_max // LIGHT_SHARE` messages each), the light offices' messages are
handled first, alone, in a small batch: it costs the same constant number of store
commands as any batch and is quick, since it is small. The batch after a light one is
taken in arrival order again, so light offices that keep coming cannot starve a heavy one
either: it gets at least every other batch.

The order within a dossier is kept: a dossier belongs to one office, and the messages
of an office are taken in the buffer's order, never some after others of its dossier.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

LIGHT_SHARE = 8


def office_of(routing_key: str) -> str:
    """The office a control message is routed for (`office.dossier`)."""
    return routing_key.partition(".")[0]


def next_batch(offices: Sequence[str], batch_max: int, light_turn: bool) -> tuple[list[int], bool]:
    """The buffer positions to handle next, in order, and whether they are a light batch.

    `offices`: the office of each buffered message. `light_turn`: whether the light
    offices may go first (the last batch was not theirs).
    """
    if light_turn:
        counts = Counter(offices)
        limit = max(1, batch_max // LIGHT_SHARE)
        light = {office for office, n in counts.items() if n <= limit}
        if light and len(light) < len(counts):
            return [n for n, office in enumerate(offices) if office in light][:batch_max], True
    return list(range(min(batch_max, len(offices)))), False
