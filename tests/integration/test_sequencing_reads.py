"""The partition owner's reads when it meets dossiers it does not hold (real store)."""

from __future__ import annotations

import pytest
from pymongo import monitoring

from broker.messages import utcnow
from dossierflow.settings import Settings
from store import Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class _Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "aggregate"):
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_the_last_sequence_numbers_of_many_idle_dossiers_take_one_command(
    settings: Settings, store: Store
) -> None:
    """A takeover batch may name hundreds of idle dossiers: a server that scans the tasks
    for a filter (FerretDB) must scan once for all of them, not once per dossier (that held
    the owner's thread for minutes, past its heartbeat, in the 10,000-task chaos run)."""
    now = utcnow()
    docs = [
        {"_id": f"t{n:03d}", "office": office, "dossier": f"d{n % 7}", "seq": n // 7,
         "status": "done", "submitted_at": now}
        for office in ("o1", "o2") for n in range(70)
    ]  # fmt: skip
    for doc in docs:
        doc["_id"] = f"{doc['office']}-{doc['_id']}"
    docs.append({"_id": "unnumbered", "office": "o1", "dossier": "d9", "status": "submitted"})
    store.collection("tasks").insert_many(docs)
    listener = _Commands()
    # A second client on the same database, so the listener sees only this call.
    counted = Store.connect(settings.mongo_url, settings.mongo_db, listeners=[listener])
    try:
        keys = ["o1.d0", "o1.d6", "o2.d3", "o1.d9", "o3.d0"]
        # The first call learns whether the server groups with `$max` (MongoDB does,
        # FerretDB v1 answers NotImplemented and the tasks' numbers are read instead).
        assert counted.sequencing.last_seqs(keys) == {"o1.d0": 9, "o1.d6": 9, "o2.d3": 9}
        listener.names.clear()
        assert counted.sequencing.last_seqs(keys) == {"o1.d0": 9, "o1.d6": 9, "o2.d3": 9}
        assert len(listener.names) == 1, listener.names
        assert counted.sequencing.last_seqs([]) == {}
        assert len(listener.names) == 1, listener.names
    finally:
        counted.close()
