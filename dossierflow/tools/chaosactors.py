"""The chaos run's platform service and person: submitting and fixing through the client.

Both act as careful users would under faults: an outage makes them wait and try again,
and a task that may have been stored is looked up rather than submitted twice.
"""

from __future__ import annotations

import contextlib
import importlib
import random
import time
from collections import Counter
from dataclasses import dataclass, replace

from broker.errors import BrokerError
from dispatcher.client import Client
from dispatcher.errors import DispatcherError, NotAnnounced
from dossierflow.settings import Settings
from dossierflow.tools import chaoscheck as cc
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.faultplan import fix_once
from dossierflow.tools.workload import Planned
from store import ActionRecord, Store, StoreError
from workers.accounting.simulated import SimulatedPackage
from workers.errors import InvalidSubmission


class Submitter:
    """Submits like a careful platform service: tolerates outages, never submits twice."""

    def __init__(self, settings: Settings, cluster: Cluster, store: Store) -> None:
        self._settings = replace(settings, amqp_url=cluster.amqp_url, mongo_db=cluster.database)
        self._store = store
        self._client: Client | None = None
        self.accepted: list[cc.Accepted] = []

    def submit(self, item: Planned, timeout_s: float = 300) -> str:
        """Submit one task; its id once it is stored (announced or not)."""
        deadline = time.monotonic() + timeout_s
        since = time.time()
        while True:
            announced = True
            try:
                task_id = self._connected().submit(
                    item.office, item.dossier, item.kind, item.payload
                )
            except NotAnnounced as exc:  # stored: the sweeper announces it; never submit it again
                task_id, announced = exc.task_id, False
                self._drop()
            except (StoreError, BrokerError, DispatcherError, InvalidSubmission) as exc:
                if time.monotonic() > deadline:
                    raise
                self._drop()
                time.sleep(0.5)
                found = self._stored_since(item, since)  # did it get stored before the error?
                if found is None:
                    continue
                task_id, announced = found, False
                print(f"  submit of {found} raised {type(exc).__name__} after storing it")
            self.accepted.append(cc.Accepted(task_id, item.office, item.dossier, since, announced))
            return task_id

    def submit_batch(self, items: list[Planned]) -> list[str]:
        """Submit several tasks in one call (`submit_many`) when the client offers it."""
        since = time.time()
        try:
            client = self._connected()
            many = getattr(client, "submit_many", None)
            if many is None:
                return [self.submit(item) for item in items]
            make = importlib.import_module("dispatcher.client").Submission
            results = many([make(i.office, i.dossier, i.kind, i.payload) for i in items])
        except (StoreError, BrokerError, DispatcherError, InvalidSubmission) as exc:
            # NotAnnounced included: which of them got stored is looked up, not guessed.
            self._drop()
            time.sleep(0.5)
            print(f"  submit_many raised {type(exc).__name__}; looking up what was stored")
            return [self._stored_or_submit(item, since) for item in items]
        ids = []
        for item, result in zip(items, results, strict=True):
            if result.task_id is None:
                raise RuntimeError(f"submit_many refused a valid task: {result.error}")
            self.accepted.append(cc.Accepted(result.task_id, item.office, item.dossier, since))
            ids.append(str(result.task_id))
        return ids

    def _stored_or_submit(self, item: Planned, since: float) -> str:
        found = self._stored_since(item, since)
        if found is None:
            return self.submit(item)
        self.accepted.append(cc.Accepted(found, item.office, item.dossier, since, False))
        return found

    def _stored_since(self, item: Planned, since: float) -> str | None:
        try:
            tasks = self._store.tasks.find(office=item.office, dossier=item.dossier)
        except StoreError:
            return None
        mine = {a.task_id for a in self.accepted}
        for task in tasks:
            fresh = task.submitted_at.timestamp() >= since - 1 and task.id not in mine
            if fresh and task.kind == item.kind and task.payload == item.payload:
                return task.id
        return None

    def _connected(self) -> Client:
        if self._client is None:
            self._client = Client.connect(self._settings, self._store)
        return self._client

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(BrokerError):
                self._client.close()
            self._client = None

    def close(self) -> None:
        """Close the broker connection."""
        self._drop()


@dataclass
class Fixer:
    """Does what the instructions of blocked dossiers say (or cancels), through a client."""

    settings: Settings
    cluster: Cluster
    store: Store
    package: SimulatedPackage
    originals: dict[str, Planned]

    def __post_init__(self) -> None:
        self.records: list[ActionRecord] = []
        self.done: Counter[str] = Counter()

    def round(self, rng: random.Random) -> int:
        """Fix every blocked dossier once; the number of actions taken."""
        before = len(self.records)
        client: Client | None = None
        try:
            settings = replace(self.settings, amqp_url=self.cluster.amqp_url)
            client = Client.connect(settings, self.store)
            self.done += fix_once(
                client,
                self.package,
                self.store,
                self.originals,
                cancel=lambda: rng.random() < 0.25,
                records=self.records,
                # Decisions come in the dossier's order, maybe behind a backlog: do not wait.
                wait_s=0.5,
            )
        except (StoreError, BrokerError, DispatcherError, InvalidSubmission) as exc:
            print(f"  fixing stopped: {type(exc).__name__}: {exc}")
        finally:
            if client is not None:
                with contextlib.suppress(BrokerError):
                    client.close()
        return len(self.records) - before
