"""How many tasks an office has waiting, counted without reading the tasks.

The API caps the tasks an office may have submitted but not finished. Counting them in
`tasks` is a scan on the FerretDB test server (filters other than `_id` scan) and a
query per submission anywhere, so two running totals are kept in `office_load`, each
document with one writer role, and read by `_id` only:

- `<office>`: `submitted`, added to by whoever stores new tasks (`Client`), once per
  stored batch;
- `<office>/<partition>`: `finished`, added to by the owner of that control partition,
  once per sequencer batch that finished tasks of the office there (done, cancelled or
  skipped), before the batch's own write.

Waiting is `submitted` minus the sum of `finished`. Both err on the lenient side: a
submitter that cannot reach the store after storing its tasks does not count them, a
batch written again (through a store outage, or replayed after its owner died) counts
its finished tasks again, and on FerretDB two concurrent `$inc` of one document may lose
one (MongoDB's are atomic). Tasks stored before these totals existed are not in
`submitted`; their finishing is.
"""

from __future__ import annotations

from collections.abc import Mapping

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped

OFFICE_LOAD = "office_load"


def finished_id(office: str, partition: str) -> str:
    """The document counting the tasks of `office` finished in `partition`."""
    return f"{office}/{partition}"


class OfficeLoad(Repository):
    """The two running totals of each office."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._coll: Collection[Doc] = db[OFFICE_LOAD]

    def submitted(self, counts: Mapping[str, int]) -> None:
        """Add newly stored tasks, by office: one command."""
        ops = [
            UpdateOne({"_id": office}, {"$inc": {"submitted": n}}, upsert=True)
            for office, n in counts.items()
            if n
        ]
        if ops:
            with mapped():
                self._coll.bulk_write(ops, ordered=False)

    def finished(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add finished tasks, by (office, partition): one command."""
        ops = [
            UpdateOne({"_id": finished_id(o, p)}, {"$inc": {"finished": n}}, upsert=True)
            for (o, p), n in counts.items()
            if n
        ]
        if ops:
            with mapped():
                self._coll.bulk_write(ops, ordered=False)

    def waiting(self, office: str, partitions: list[str]) -> int:
        """Tasks of `office` submitted and not finished (never below 0): one read by `_id`."""
        ids = [office, *(finished_id(office, p) for p in partitions)]
        with mapped():
            docs = list(self._coll.find({"_id": {"$in": ids}}))
        submitted = sum(int(d.get("submitted", 0)) for d in docs)
        finished = sum(int(d.get("finished", 0)) for d in docs)
        return max(0, submitted - finished)
