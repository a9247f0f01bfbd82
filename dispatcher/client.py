"""The Python client of the platform and of the ops tools.

`submit` stores a task and publishes its `submitted` command, answering after the
publisher confirm. `restart`, `cancel` and `resolve` check the request at once (a clear
error for a task in the wrong state or a role that may not act), record it, announce it
to the dossier's partition and wait for the sequencer's decision.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from broker import topology
from broker.errors import (
    BrokerError,
    ChannelRefused,
    ConnectionLost,
    PublishNotConfirmed,
    Unroutable,
)
from broker.messages import ID_FORM, Envelope, MessageType, utcnow, valid_id
from broker.rabbitmq import BatchPublisher, Connection, Outgoing
from dispatcher.actions import refusal
from dispatcher.codes import Holders, foreign_code, payload_code
from dispatcher.errors import ActionRefused, NotAnnounced, Overloaded, UnknownTask
from dispatcher.settings import Settings
from store import ActionRecord, Role, Store, StoreError, StoreUnavailable, TaskRecord
from workers import handlers as _handlers  # noqa: F401  (registers the task kinds)
from workers.errors import InvalidSubmission
from workers.kinds import spec_for, validate_payload
from workers.vocabulary import ActionStatus, ActionType, TaskStatus

log = structlog.get_logger("dossierflow.client")
T = TypeVar("T")

ACTION_COMMANDS = {
    ActionType.RESTART: MessageType.RESTART,
    ActionType.CANCEL: MessageType.CANCEL,
    ActionType.RESOLVE: MessageType.RESOLVE,
}


def canonical_hash(*parts: object) -> str:
    """SHA-256 of the parts as canonical JSON (sorted keys): equal values, equal hashes.

    Stored as coalescing keys and idempotency fingerprints, so the form never changes.
    """
    canonical = json.dumps(list(parts), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def coalesce_key(office: str, dossier: str, kind: str, payload: Mapping[str, Any]) -> str:
    """Equal submissions (same dossier, kind and payload) share this key."""
    return canonical_hash(office, dossier, kind, payload)


@dataclass(frozen=True)
class Submission:
    """One task to submit."""

    office: str
    dossier: str
    kind: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class SubmitResult:
    """What became of one submission: its task id, or why it was refused."""

    task_id: str | None
    error: str | None = None
    new: bool = True  # False: coalesced into an equal task that still waits


# A submission as stored and its coalescing key (None: its kind never coalesces), or why
# it is refused.
Checked = tuple[Submission, dict[str, Any], str | None] | InvalidSubmission


class Client:
    """Stores tasks and announces them and actions to the sequencer. Not thread-safe.

    A platform service holds a client for hours: a broker connection that broke while
    idle (missed heartbeats) or under a call is opened again and the call goes on; a
    database outage is waited through for up to `store_wait_s` before the caller gets
    StoreUnavailable.
    """

    def __init__(
        self,
        store: Store,
        conn: Connection,
        topo: topology.Topology,
        payload_limit: int,
        *,
        reconnect: Callable[[], Connection] | None = None,
        store_wait_s: float = 30.0,
    ) -> None:
        self._store = store
        self._actions = store.actions
        self._profiles = store.profiles
        self._load = store.load
        self._conn = conn
        self._topo = topo
        self._payload_limit = payload_limit
        self._reconnect = reconnect
        self._store_wait_s = store_wait_s
        self._open_channels()

    def _open_channels(self) -> None:
        self._ch = self._conn.channel(confirm=True)
        try:
            self._ch.declare_control(self._topo)
        except ChannelRefused as exc:
            # The API's own login (deploy/rabbitmq/service-user.sh) may not declare, and so
            # may not delete, the topology: it publishes into what the dispatcher declared.
            # One login for everything (the local mode) declares it here.
            if exc.code != 403:
                raise
        self._batch: BatchPublisher | None = None

    @classmethod
    def connect(cls, settings: Settings, store: Store | None = None) -> Client:
        """Open a client on the configured broker and database."""
        store = store or Store.connect(settings.mongo_url, settings.mongo_db)

        def connect() -> Connection:
            return Connection.open(
                settings.amqp_url, name="dossierflow-client", heartbeat=settings.heartbeat_s
            )

        return cls(
            store, connect(), settings.topology(), settings.payload_limit_bytes, reconnect=connect
        )

    # -- broker and store, robustly --------------------------------------------------------
    def _fresh(self) -> None:
        """Open the connection again (it broke or idled out)."""
        if self._reconnect is None:
            raise ConnectionLost("the client's connection broke and it cannot reconnect")
        self._conn.close()
        self._conn = self._reconnect()
        self._open_channels()

    def _announce(self, envelopes: Sequence[Envelope]) -> None:
        """Publish commands with confirms awaited together; reconnect once if needed.

        A retried command is marked `recheck`: the first attempt may have reached the
        broker before the connection broke, and the sequencer must not take it twice.
        """
        items = [
            Outgoing(topology.PARTITIONS_EXCHANGE, e, self._topo.route(e.routing_key))
            for e in envelopes
        ]
        try:
            if not self._conn.is_open:
                raise ConnectionLost("idle connection closed")
            self._publish(items)
            return
        except ConnectionLost as exc:
            log.info("client.reconnecting", error=str(exc))
        self._fresh()
        self._publish([Outgoing(i.exchange, _rechecked(i.envelope), i.headers) for i in items])

    def _publish(self, items: list[Outgoing]) -> None:
        if self._batch is None:
            self._batch = self._conn.publisher()
        # Let the connection answer heartbeats it missed while idle, or find it broken.
        self._conn.pump(0)
        if self._batch.publish_all(items):
            raise Unroutable("a command found no control partition")

    def _stored(self, step: Callable[[], T]) -> T:
        """Run a store step, waiting through a short database outage."""
        for attempt in Retrying(
            stop=stop_after_delay(self._store_wait_s),
            wait=wait_exponential(multiplier=0.2, max=3),
            retry=retry_if_exception_type(StoreUnavailable),
            reraise=True,
        ):
            with attempt:
                return step()
        raise AssertionError("unreachable")  # pragma: no cover

    # -- submitting ------------------------------------------------------------------------
    def submit(self, office: str, dossier: str, kind: str, payload: Mapping[str, Any]) -> str:
        """Validate, store and announce a task; return its id once the broker confirmed.

        A coalescible kind (`dossier.sync`) equal to the dossier's latest submission, while
        that one still waits, returns its id instead. If the publish is not confirmed after
        the task was stored, NotAnnounced carries the task's id: it is stored and the
        dispatcher's sweeper announces it later, so it must not be submitted again. When
        the broker refused it (a full control partition: the dispatcher is behind) it is
        Overloaded, a NotAnnounced that asks the caller to slow down.
        """
        (result,) = self._submit([Submission(office, dossier, kind, payload)], strict=True)
        assert result.task_id is not None
        return result.task_id

    def submit_many(self, items: Sequence[Submission]) -> list[SubmitResult]:
        """Submit a batch: one insert, one coalescing write, confirms awaited together.

        One result per item, in order: the task id, or the reason it was refused. If the
        broker did not confirm after the tasks were stored, NotAnnounced carries every
        stored id (the sweeper announces them; do not submit them again).
        """
        return self._submit(items, strict=False)

    def _submit(self, items: Sequence[Submission], strict: bool) -> list[SubmitResult]:
        results: list[SubmitResult] = []
        tasks: list[TaskRecord] = []
        latest: dict[str, tuple[str, str | None]] = {}
        now = utcnow()
        checked = self._checked_all(items, strict)
        # One lookup for the whole batch, and only when it holds a coalescible kind.
        coalescing = {
            f"{c[0].office}.{c[0].dossier}"
            for c in checked
            if not isinstance(c, InvalidSubmission) and c[2] is not None
        }
        waiting = (
            self._stored(lambda: self._store.tasks.waiting_latest(coalescing)) if coalescing else {}
        )
        for entry in checked:
            if isinstance(entry, InvalidSubmission):
                results.append(SubmitResult(None, str(entry), False))
                continue
            item, clean, key = entry
            dossier_key = f"{item.office}.{item.dossier}"
            if key is not None:
                merged = _merged(dossier_key, key, latest, waiting)
                if merged is not None:
                    results.append(SubmitResult(merged, None, False))
                    continue
            task = TaskRecord(
                id=new_task_id(),
                office=item.office,
                dossier=item.dossier,
                kind=item.kind,
                payload=clean,
                status=TaskStatus.SUBMITTED,
                submitted_at=now,
                coalesce_key=key,
            )
            tasks.append(task)
            latest[dossier_key] = (task.id, key)
            results.append(SubmitResult(task.id))
        if not tasks:
            return results
        plain = {k for k, (_, c) in latest.items() if c is None}
        if plain:
            self._stored(lambda: self._store.tasks.forget_latest(plain))
        self._stored(lambda: self._store.tasks.insert_many(tasks))
        self._count(tasks)
        coalescible = {k: (t, c) for k, (t, c) in latest.items() if c is not None}
        if coalescible:
            self._stored(lambda: self._store.tasks.remember_latest(coalescible))
        try:
            self._announce([_submitted(t) for t in tasks])
        except PublishNotConfirmed as exc:
            # Nacked, not lost: a full partition refuses (reject-publish), and the sweeper
            # announces stored tasks once the partitions have drained.
            log.warning("client.overloaded", tasks=len(tasks), error=str(exc))
            raise Overloaded(tasks[0].id, [t.id for t in tasks], results) from exc
        except BrokerError as exc:
            raise NotAnnounced(tasks[0].id, [t.id for t in tasks], results) from exc
        return results

    def _count(self, tasks: Sequence[TaskRecord]) -> None:
        """Add stored tasks to their offices' totals (`store.load`), one try only.

        The tasks are stored: failing the submission now would have them submitted twice,
        so a total that cannot be written leaves them uncounted (the cap is lenient).
        """
        try:
            self._load.submitted(Counter(t.office for t in tasks))
        except StoreError as exc:
            log.warning("client.uncounted", tasks=len(tasks), error=type(exc).__name__)

    def _checked_all(self, items: Sequence[Submission], strict: bool) -> list[Checked]:
        """Each item as stored and its coalescing key, or why it is refused (strict: raised)."""
        holders = self._holders([i.payload for i in items])
        checked: list[Checked] = []
        for item in items:
            try:
                checked.append((item, *self._checked(item, holders)))
            except InvalidSubmission as exc:
                if strict:
                    raise
                checked.append(exc)
        return checked

    def _checked(self, item: Submission, holders: Holders) -> tuple[dict[str, Any], str | None]:
        for name, value in (("office", item.office), ("dossier", item.dossier)):
            if not valid_id(value):
                raise InvalidSubmission(f"{name} must match {ID_FORM}")
        clean = self.validate(item.kind, item.payload)
        if foreign := foreign_code(item.office, item.dossier, clean, holders):
            raise InvalidSubmission(foreign)
        if not spec_for(item.kind).coalescible:
            return clean, None
        return clean, coalesce_key(item.office, item.dossier, item.kind, clean)

    def _holders(self, payloads: Sequence[Mapping[str, Any] | None]) -> Holders:
        """Which dossiers hold the codes the payloads name (see `dispatcher.codes`)."""
        codes = {c for p in payloads if (c := payload_code(p)) is not None}
        return self._stored(lambda: self._profiles.holders(codes)) if codes else {}

    def validate(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload as stored, or InvalidSubmission saying what is wrong."""
        if not isinstance(payload, Mapping):
            raise InvalidSubmission("payload must be a JSON object")
        size = len(json.dumps(payload, default=str).encode())
        if size > self._payload_limit:
            raise InvalidSubmission(
                f"payload of {size} bytes is over the limit of {self._payload_limit} bytes"
            )
        model = validate_payload(kind, payload)  # InvalidSubmission says what is wrong
        dumped: dict[str, Any] = model.model_dump(mode="json")
        return dumped

    # -- actions ----------------------------------------------------------------------
    def restart(
        self,
        task_id: str,
        *,
        payload: Mapping[str, Any] | None = None,
        role: Role = Role.SUPPORT,
        by: str = "cli",
        wait_s: float = 30.0,
    ) -> ActionRecord:
        """Run a failed task again, with a corrected payload if given."""
        return self._act(
            task_id, ActionType.RESTART, role=role, by=by, wait_s=wait_s, payload=payload
        )

    def cancel(
        self, task_id: str, *, role: Role = Role.SUPPORT, by: str = "cli", wait_s: float = 30.0
    ) -> ActionRecord:
        """Never run the task; its dossier goes on with the next one."""
        return self._act(task_id, ActionType.CANCEL, role=role, by=by, wait_s=wait_s)

    def resolve(
        self, task_id: str, *, role: Role = Role.SUPPORT, by: str = "cli", wait_s: float = 30.0
    ) -> ActionRecord:
        """The failure was fixed by hand in the package: skip the task, go on."""
        return self._act(task_id, ActionType.RESOLVE, role=role, by=by, wait_s=wait_s)

    def _act(
        self,
        task_id: str,
        action: ActionType,
        *,
        role: Role,
        by: str,
        wait_s: float,
        payload: Mapping[str, Any] | None = None,
    ) -> ActionRecord:
        task = self._stored(lambda: self._store.tasks.get(task_id))
        if task is None:
            raise UnknownTask(f"no task {task_id}")
        reason = refusal(task, action, role)
        if reason is not None:
            raise ActionRefused(reason)
        clean = self.validate(task.kind, payload) if payload is not None else None
        if foreign := foreign_code(task.office, task.dossier, clean, self._holders([clean])):
            raise InvalidSubmission(foreign)
        record = ActionRecord(
            id=uuid.uuid4().hex,
            task_id=task.id,
            type=action,
            requested_by=by,
            requested_at=utcnow(),
            payload=clean,
        )
        self._stored(lambda: self._actions.insert(record))
        data: dict[str, Any] = {"action_id": record.id}
        if clean is not None:
            data["payload"] = clean
        at, command = record.requested_at, ACTION_COMMANDS[action]
        env = Envelope(command, task.id, task.office, task.dossier, at, data, record.id)
        self._announce([env])
        return self._decision(record, wait_s)

    def _decision(self, record: ActionRecord, wait_s: float) -> ActionRecord:
        deadline = time.monotonic() + wait_s
        while True:
            current = self._actions.get(record.id) or record
            if current.status is ActionStatus.REFUSED:
                raise ActionRefused(current.reason)
            if current.status is ActionStatus.APPLIED or time.monotonic() >= deadline:
                return current
            time.sleep(0.05)

    def close(self) -> None:
        """Close the broker connection (the store belongs to the caller)."""
        self._conn.close()


_ids = itertools.count()


def new_task_id() -> str:
    """A task id that sorts in submission order within a client (like a UUIDv7).

    Milliseconds since the epoch, a per-process counter, then randomness: 32 hex digits.
    Tasks of one batch share their submission time, and a task announced late by the
    sweeper (its command was not confirmed) is put in order among its batch by this id.
    """
    millis = time.time_ns() // 1_000_000
    return f"{millis:012x}{next(_ids) % 0x10000:04x}{secrets.token_hex(8)}"


def _submitted(task: TaskRecord) -> Envelope:
    """The command announcing a stored task, carrying what the sequencer needs to run it."""
    return Envelope(
        MessageType.SUBMITTED,
        task.id,
        task.office,
        task.dossier,
        at=task.submitted_at,
        data={"kind": task.kind, "payload": task.payload},
    )


def _rechecked(env: Envelope) -> Envelope:
    """The same command, marked as possibly seen before."""
    if env.type is not MessageType.SUBMITTED:
        return env
    return replace(env, data={**env.data, "recheck": True})


def _merged(
    dossier_key: str,
    key: str,
    latest: Mapping[str, tuple[str, str | None]],
    waiting: Mapping[str, TaskRecord],
) -> str | None:
    """The id of an equal waiting task this submission coalesces into, if any."""
    if dossier_key in latest:  # an earlier item of this batch is the latest one
        task_id, latest_key = latest[dossier_key]
        return task_id if latest_key == key else None
    task = waiting.get(dossier_key)
    return task.id if task is not None and task.coalesce_key == key else None
