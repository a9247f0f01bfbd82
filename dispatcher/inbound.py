"""What reaches a control partition, decoded once into typed messages (no I/O).

Every delivery becomes exactly one of: a message for the rules of one dossier, or a
reason to drop it. Fields a sender must give (the release `run` of an event, the action
type) are checked here, so the rules never see a half-formed message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from broker.errors import DecodeError
from broker.messages import Envelope, MessageType, decode, parse_ts, valid_id
from workers.vocabulary import SEVERITY, ActionType, ErrorCode, Failure


@dataclass(frozen=True)
class Submitted:
    """A stored task asks to be accepted into its dossier's order."""

    task_id: str
    kind: str
    payload: Mapping[str, Any]
    # The owner must look the task up first: a republished or redelivered command, or
    # one that does not carry the task (then the store fills in kind and payload).
    recheck: bool = False
    accepted: bool = False  # set by the owner when the store says it was accepted


@dataclass(frozen=True)
class Started:
    """A connector began an attempt of a release."""

    task_id: str
    run: int
    attempt: int
    worker: str
    at: datetime


@dataclass(frozen=True)
class Done:
    """An attempt succeeded."""

    task_id: str
    run: int
    result: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True)
class Failed:
    """An attempt failed, transiently or for good (`error` is the connector's report)."""

    task_id: str
    run: int
    error: Failure


@dataclass(frozen=True)
class RetryDue:
    """A delayed retry's wait is over."""

    task_id: str
    run: int
    retry: int


@dataclass(frozen=True)
class ReleaseLost:
    """The sweeper found a release in flight whose work message is nowhere any more.

    Its office's work queue held no ready and no unacknowledged message, at every look
    for the sweeper's grace, and was empty at `empty_at` (a time after the release was
    stored): the queue was purged or deleted, or the release's publish was lost with its
    owner. Sent with the task's `run` as the store had it: the rules release the task
    again only if that release is still the current one and this owner did not publish
    it after `empty_at`.
    """

    task_id: str
    run: int
    empty_at: datetime


@dataclass(frozen=True)
class DeadLettered:
    """The broker dead-lettered a readable work message (rejected, or delivery limit)."""

    task_id: str
    run: int
    reason: str
    queue: str
    count: int
    raw: bytes = b""
    orphan: bool = False  # set by the owner: no task of this dossier has that id


@dataclass(frozen=True)
class Unreadable:
    """The broker dead-lettered bytes that are no envelope.

    No run can be read from such bytes. `redelivered` is the one fact that tells a new
    dead letter from a replay of one the rules have handled: a first delivery was never
    handled (True when not known: it may be a replay).
    """

    message_id: str
    reason: str
    queue: str
    raw: bytes = b""
    orphan: bool = False  # set by the owner: no task of this dossier has that id
    redelivered: bool = True
    run: int | None = None  # the run of the work message (its header), when it has one


@dataclass(frozen=True)
class Act:
    """A person's restart, cancel or resolve, in the dossier's order."""

    task_id: str
    action_id: str
    action: ActionType
    payload: Mapping[str, Any] | None = None


Message = (
    Submitted | Started | Done | Failed | RetryDue | ReleaseLost | DeadLettered | Unreadable | Act
)

ACTIONS = {
    MessageType.RESTART: ActionType.RESTART,
    MessageType.CANCEL: ActionType.CANCEL,
    MessageType.RESOLVE: ActionType.RESOLVE,
}


@dataclass(frozen=True)
class Death:
    """Why the broker dead-lettered a work message (its x-death entry)."""

    reason: str
    queue: str
    count: int
    # The run its work message was released under (the `run` header the owner publishes
    # work with), None for work released by an earlier version.
    run: int | None = None


@dataclass(frozen=True)
class Inbound:
    """One decoded delivery: the dossier it belongs to and the message, or why not."""

    office: str
    dossier: str
    message: Message | None
    problem: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The dossier key."""
        return f"{self.office}.{self.dossier}"


def reported(data: object) -> Failure:
    """A connector's failure, mapped through the error codes (its severity is not trusted)."""
    try:
        failure = Failure.from_dict(data if isinstance(data, Mapping) else {})
    except ValueError:
        return Failure.of(ErrorCode.UNKNOWN_ERROR, "the connector reported an unreadable error")
    return replace(failure, severity=SEVERITY[failure.code])


def _int(data: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {name!r} must be an integer")
    return value


def _message(env: Envelope, death: Death | None, raw: bytes, redelivered: bool) -> Message:
    data = env.data
    if death is not None:
        return DeadLettered(
            env.task_id, _int(data, "run", -1), death.reason, death.queue, death.count, raw
        )
    kind = env.type
    if kind is MessageType.SUBMITTED:
        task_kind, payload = data.get("kind"), data.get("payload")
        complete = isinstance(task_kind, str) and isinstance(payload, dict)
        return Submitted(
            env.task_id,
            task_kind if isinstance(task_kind, str) else "",
            payload if isinstance(payload, dict) else {},
            recheck=redelivered or bool(data.get("recheck")) or not complete,
        )
    if kind is MessageType.STARTED:
        worker = data.get("worker")
        return Started(
            env.task_id,
            _int(data, "run"),
            _int(data, "attempt", 1),
            worker if isinstance(worker, str) else "",
            env.at,
        )
    if kind is MessageType.DONE:
        result = data.get("result")
        return Done(
            env.task_id, _int(data, "run"), result if isinstance(result, dict) else {}, env.at
        )
    if kind is MessageType.FAILED:
        return Failed(env.task_id, _int(data, "run"), reported(data.get("error")))
    if kind is MessageType.RETRY_DUE:
        return RetryDue(env.task_id, _int(data, "run"), _int(data, "retry"))
    if kind is MessageType.RELEASE_LOST:
        return _release_lost(env)
    if kind in ACTIONS:
        action_id, payload = data.get("action_id"), data.get("payload")
        if not isinstance(action_id, str) or not action_id:
            raise ValueError("an action command needs its action_id")
        return Act(
            env.task_id, action_id, ACTIONS[kind], payload if isinstance(payload, dict) else None
        )
    raise ValueError(f"a {kind.value} message has no place in a control partition")


def _release_lost(env: Envelope) -> ReleaseLost:
    empty_at = env.data.get("empty_at")
    if not isinstance(empty_at, str):
        raise ValueError("field 'empty_at' must be a timestamp")
    return ReleaseLost(env.task_id, _int(env.data, "run"), parse_ts(empty_at))


def inbound(
    body: bytes, message_id: str, routing_key: str, death: Death | None, redelivered: bool
) -> Inbound:
    """Decode one delivery of a control partition."""
    office, _, dossier = routing_key.partition(".")
    try:
        env = decode(body, message_id)
    except DecodeError as exc:
        if death is None or not (valid_id(office) and valid_id(dossier)):
            # Not from a work queue of ours: nothing to tie it to.
            return Inbound(office, dossier, None, f"unreadable: {exc.reason}")
        bad = Unreadable(
            message_id, death.reason, death.queue, body, redelivered=redelivered, run=death.run
        )
        return Inbound(office, dossier, bad)
    if env.routing_key != routing_key and death is None:
        # Routed to another dossier's partition than it names: not ours to believe.
        return Inbound(env.office, env.dossier, None, "routing key differs from the envelope")
    try:
        message = _message(env, death, body, redelivered)
    except ValueError as exc:
        return Inbound(env.office, env.dossier, None, str(exc))
    return Inbound(env.office, env.dossier, message)
