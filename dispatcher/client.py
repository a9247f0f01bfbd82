"""The Python client of the platform and of the ops tools.

`submit` stores a task and publishes its `submitted` command, answering after the
publisher confirm. `restart`, `cancel` and `resolve` check the request at once (a clear
error for a task in the wrong state or a role that may not act), record it, announce it
to the dossier's partition and wait for the sequencer's decision.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from broker import topology
from broker.errors import BrokerError
from broker.messages import Envelope, MessageType, utcnow, valid_id
from broker.rabbitmq import Connection
from dispatcher.actions import refusal
from dispatcher.errors import ActionRefused, InvalidSubmission, NotAnnounced, UnknownTask
from dispatcher.settings import Settings
from store import (
    ActionRecord,
    Actions,
    ActionStatus,
    ActionType,
    Role,
    Store,
    TaskRecord,
    TaskStatus,
)
from workers import handlers as _handlers  # noqa: F401  (registers the task kinds)
from workers.errors import InvalidSubmission as InvalidTaskInput
from workers.kinds import spec_for, validate_payload

ACTION_COMMANDS = {
    ActionType.RESTART: MessageType.RESTART,
    ActionType.CANCEL: MessageType.CANCEL,
    ActionType.RESOLVE: MessageType.RESOLVE,
}


def coalesce_key(office: str, dossier: str, kind: str, payload: Mapping[str, Any]) -> str:
    """Equal submissions (same dossier, kind and payload) share this key."""
    canonical = json.dumps([office, dossier, kind, payload], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Client:
    """Stores tasks and announces them and actions to the sequencer. Not thread-safe."""

    def __init__(
        self, store: Store, conn: Connection, topo: topology.Topology, payload_limit: int
    ) -> None:
        self._store = store
        self._actions = Actions(store)
        self._conn = conn
        self._payload_limit = payload_limit
        self._ch = conn.channel(confirm=True)
        self._ch.declare_control(topo)

    @classmethod
    def connect(cls, settings: Settings, store: Store | None = None) -> Client:
        """Open a client on the configured broker and database."""
        store = store or Store.connect(settings.mongo_url, settings.mongo_db)
        conn = Connection.open(
            settings.amqp_url, name="dossierflow-client", heartbeat=settings.heartbeat_s
        )
        return cls(store, conn, settings.topology(), settings.payload_limit_bytes)

    def submit(self, office: str, dossier: str, kind: str, payload: Mapping[str, Any]) -> str:
        """Validate, store and announce a task; return its id once the broker confirmed.

        A coalescible kind (`dossier.sync`) equal to the dossier's latest submission, while
        that one still waits, returns its id instead. If the publish is not confirmed after
        the task was stored, NotAnnounced carries the task's id: it is stored and the
        dispatcher's sweeper announces it later, so it must not be submitted again.
        """
        for name, value in (("office", office), ("dossier", dossier)):
            if not isinstance(value, str) or not valid_id(value):
                raise InvalidSubmission(f"{name} must match [A-Za-z0-9_-]{{1,64}}")
        clean = self.validate(kind, payload)
        key = None
        if spec_for(kind).coalescible:
            key = coalesce_key(office, dossier, kind, clean)
            waiting = self._store.waiting_equal(f"{office}.{dossier}", key)
            if waiting is not None:
                return waiting.id
        now = utcnow()
        task = TaskRecord(
            id=uuid.uuid4().hex,
            office=office,
            dossier=dossier,
            kind=kind,
            payload=clean,
            status=TaskStatus.SUBMITTED,
            submitted_at=now,
            coalesce_key=key,
        )
        self._store.insert_task(task)
        self._store.remember_latest(f"{office}.{dossier}", task.id, key)
        try:
            self._ch.publish(
                topology.CONTROL_EXCHANGE,
                Envelope(MessageType.SUBMITTED, task.id, office, dossier, at=now),
            )
        except BrokerError as exc:
            raise NotAnnounced(task.id) from exc
        return task.id

    def validate(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload as stored, or InvalidSubmission saying what is wrong."""
        if not isinstance(payload, Mapping):
            raise InvalidSubmission("payload must be a JSON object")
        size = len(json.dumps(payload, default=str).encode())
        if size > self._payload_limit:
            raise InvalidSubmission(
                f"payload of {size} bytes is over the limit of {self._payload_limit} bytes"
            )
        try:
            model = validate_payload(kind, payload)
        except InvalidTaskInput as exc:
            raise InvalidSubmission(str(exc)) from exc
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
        task = self._store.task(task_id)
        if task is None:
            raise UnknownTask(f"no task {task_id}")
        reason = refusal(task, action, role)
        if reason is not None:
            raise ActionRefused(reason)
        clean = self.validate(task.kind, payload) if payload is not None else None
        record = ActionRecord(
            id=uuid.uuid4().hex,
            task_id=task.id,
            type=action,
            requested_by=by,
            requested_at=utcnow(),
            payload=clean,
        )
        self._actions.insert(record)
        self._ch.publish(
            topology.CONTROL_EXCHANGE,
            Envelope(
                ACTION_COMMANDS[action],
                task.id,
                task.office,
                task.dossier,
                at=record.requested_at,
                data={"action_id": record.id},
                message_id=record.id,
            ),
        )
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
