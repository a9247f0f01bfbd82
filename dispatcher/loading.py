"""Rebuilding dossiers from the store when an owner first meets them.

A dossier's open tasks are loaded only when it may have some: its document says so, or
a message about it was redelivered (the previous owner may have written tasks and died
before its dossier write). A released task whose publish may not have been confirmed
(its dossier was written in a batch after the partition's last confirmed one) is
released again with the same run: a duplicate run is harmless (idempotency key), a
missing one would leave the dossier stuck.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dispatcher import core
from store.sequencing import Sequencing
from workers.vocabulary import TaskStatus


def _task(doc: Mapping[str, Any]) -> core.OpenTask:
    return core.OpenTask(
        id=doc["_id"],
        kind=doc["kind"],
        payload=dict(doc.get("payload") or {}),
        seq=int(doc.get("seq", 0)),
        status=TaskStatus(doc["status"]),
        run=int(doc.get("run", 0)),
        retries=int(doc.get("retries", 0)),
        failures=int(doc.get("failures", 0)),
        last_action=doc.get("last_action"),
        attempts=int(doc.get("attempts", 0)),
        decided=set(doc.get("decided") or ()),
        dead=set(doc.get("dead_letters") or ()),
    )


def _confirmed(doc: Mapping[str, Any], partition: Mapping[str, Any]) -> bool:
    """Whether a task's last write came from a batch whose publishes were all confirmed.

    Tasks are written before anything that depends on them, so the head task's own
    stamp (epoch, batch) tells, even when its owner died before writing its dossier; the
    partition keeps the last confirmed batch of every epoch.
    """
    marks = partition.get("confirmed")
    if not isinstance(marks, Mapping):
        return False
    mark = marks.get(str(int(doc.get("epoch", 0))))
    return mark is not None and int(doc.get("batch", 0)) <= int(mark)


def load_dossiers(
    seq: Sequencing,
    missing: Mapping[str, bool],
    partition_docs: Mapping[str, Mapping[str, Any]],
    now: datetime | None = None,
) -> tuple[dict[str, core.Dossier], dict[str, list[core.Effect]]]:
    """Dossiers by key (empty ones for keys never seen) and the repairs they need.

    `missing` maps each dossier key to whether one of its messages was redelivered (or
    must be read from the store anyway); `partition_docs` maps each key to its
    partition's ownership document; `now` is when a repair publishes.
    """
    docs = seq.dossiers(missing)
    need = [
        k for k, redelivered in missing.items()
        if redelivered or (k in docs and (docs[k].get("open") or docs[k].get("active")))
    ]  # fmt: skip
    tasks: dict[str, list[core.OpenTask]] = {}
    stamps: dict[str, Mapping[str, Any]] = {}
    for found in seq.open_tasks(need) if need else []:
        tasks.setdefault(f"{found['office']}.{found['dossier']}", []).append(_task(found))
        stamps[found["_id"]] = found
    idle = [k for k in need if k not in tasks]
    last_seqs = seq.last_seqs(idle) if idle else {}
    dossiers: dict[str, core.Dossier] = {}
    repairs: dict[str, list[core.Effect]] = {}
    for key in missing:
        office, _, dossier = key.partition(".")
        doc: Mapping[str, Any] | None = docs.get(key)
        open_ = sorted(tasks.get(key, []), key=lambda t: t.seq)
        next_seq = max([int(doc.get("next_seq", 0)) if doc else 0, *(t.seq + 1 for t in open_)])
        if key in need and not open_:
            # The document is written only when readers' view changes: after a batch that
            # finished the last open tasks but died before that write, it still counts
            # from when the dossier became busy. The tasks know how far numbering went.
            last = last_seqs.get(key)
            next_seq = max(next_seq, last + 1 if last is not None else 0)
        d = core.Dossier(office, dossier, next_seq, {t.id: t for t in open_})
        if doc is not None:
            blocked = bool(doc.get("blocked"))
            d.saved = (bool(doc.get("open")), blocked, doc.get("active") if blocked else None)
        dossiers[key] = d
        if open_ and not _confirmed(stamps[open_[0].id], partition_docs[key]):
            effects = core.repair(d, now)
            if effects:
                repairs[key] = effects
    return dossiers, repairs
