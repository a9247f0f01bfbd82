"""Submit in bulk: up to 1,000 tasks in one request, one result per item, in order.

Each item may carry its own idempotency key, reserved and completed through the same
`IdempotencyKeys` as a single submit, so retrying a whole batch returns the same tasks.
The items that are new go to `Client.submit_many` together: one insert, confirms awaited
together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from broker.errors import BrokerError
from dispatcher.api.auth import SUBMITTERS, Principal
from dispatcher.api.models import Id, KindName, Request
from dispatcher.api.problems import Problem
from dispatcher.api.service import BEHIND, Service, fingerprint
from dispatcher.client import Submission, SubmitResult
from dispatcher.errors import NotAnnounced, Overloaded
from workers.errors import InvalidSubmission
from workers.kinds import validate_payload

MAX_ITEMS = 1000
BATCH_BODY_BYTES = 8 * 1024 * 1024  # the body limit of a batch (a single submit's is smaller)

Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]


class BatchItem(Request):
    """One task of a batch; `idempotency_key` works like a single submit's header."""

    dossier: Id
    kind: KindName
    payload: dict[str, Any]
    idempotency_key: Key | None = None


class BatchRequest(Request):
    """Tasks to submit for the token's office."""

    items: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_ITEMS)]


class ItemProblem(BaseModel):
    """Why one item was not submitted (a problem document, RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str


class ItemResult(BaseModel):
    """What became of one item: 201 a new task, 200 an existing one, else its problem."""

    status: int
    task_id: str | None
    problem: ItemProblem | None


class BatchAnswer(BaseModel):
    """One result per item, in the items' order."""

    items: list[ItemResult]


def _created(task_id: str, new: bool) -> ItemResult:
    return ItemResult(status=201 if new else 200, task_id=task_id, problem=None)


def _refused(problem: Problem) -> ItemResult:
    return ItemResult(
        status=problem.status, task_id=None, problem=ItemProblem(**problem.document())
    )


@dataclass
class _Keyed:
    """An item's idempotency key and the fingerprint of its request."""

    key: str
    stamp: str


REUSED = "the key was used for another request"


class _Batch:
    """The state of one batch: results so far, the items to submit and their keys."""

    def __init__(self, svc: Service, office: str, size: int) -> None:
        self.svc = svc
        self.office = office
        self.results: list[ItemResult | None] = [None] * size
        self.pending: list[int] = []
        self.keyed: dict[int, _Keyed] = {}
        self.first: dict[str, int] = {}  # key → the first item of this batch carrying it

    def claim(self, index: int, item: BatchItem) -> None:
        """Reserve the item's key, or answer from what the key did before."""
        if item.idempotency_key is None:
            self.pending.append(index)
            return
        mine = _Keyed(item.idempotency_key, fingerprint(item.dossier, item.kind, item.payload))
        self.keyed[index] = mine
        if mine.key in self.first:
            return  # answered like the first item with this key
        self.first[mine.key] = index
        earlier = self.svc.keys.reserve(self.office, mine.key, mine.stamp)
        if earlier is None:
            self.pending.append(index)
        elif earlier.fingerprint != mine.stamp:
            self.results[index] = _refused(Problem(409, "idempotency-key-reused", REUSED))
        elif earlier.task_id is None:
            in_progress = "the first request is still in progress"
            self.results[index] = _refused(Problem(409, "idempotency-key-reused", in_progress))
        else:
            self.results[index] = _created(earlier.task_id, False)

    def release(self) -> None:
        """Free the keys this batch reserved (nothing was stored)."""
        for index in self.pending:
            if index in self.keyed:
                self.svc.keys.release(self.office, self.keyed[index].key)

    def settle(self, outcomes: list[SubmitResult]) -> None:
        """Record what the client did with each submitted item, and complete its key."""
        for index, outcome in zip(self.pending, outcomes, strict=True):
            mine = self.keyed.get(index)
            if outcome.task_id is not None:
                self.results[index] = _created(outcome.task_id, outcome.new)
                if mine is not None:
                    self.svc.keys.complete(self.office, mine.key, outcome.task_id)
            else:
                problem = Problem(422, "invalid-payload", outcome.error or "")
                self.results[index] = _refused(problem)
                if mine is not None:
                    self.svc.keys.release(self.office, mine.key)

    def answer(self, index: int) -> ItemResult:
        """An item's result; a repeated key answers like its first item, or 409."""
        found = self.results[index]
        if found is not None:
            return found
        mine = self.keyed[index]
        leader = self.first[mine.key]
        if self.keyed[leader].stamp != mine.stamp:
            return _refused(Problem(409, "idempotency-key-reused", REUSED))
        earlier = self.results[leader]
        assert earlier is not None
        if earlier.task_id is None:
            return earlier
        return _created(earlier.task_id, False)


def submit_batch(svc: Service, who: Principal, items: list[BatchItem]) -> list[ItemResult]:
    """Submit the items for the user's office; one result per item, in order."""
    who.require(SUBMITTERS, "submit tasks")
    office = who.user.office
    if office is None:
        raise Problem(403, "forbidden", "the user belongs to no office")
    # First: a refused batch costs no schema check and no key reservation (store writes).
    svc.admission.admit(office, len(items))
    _check_schemas(items)
    batch = _Batch(svc, office, len(items))
    for index, item in enumerate(items):
        batch.claim(index, item)
    try:
        outcomes = _submit(svc, office, [items[i] for i in batch.pending])
    except Overloaded as exc:
        # Stored, but the broker refused the announcement: complete the keys (a retry with
        # them stores nothing), then ask the caller to slow down.
        batch.settle(list(exc.results or []))
        raise Problem(
            503,
            "unavailable",
            f"{BEHIND}. The batch is stored and will run: do not submit it "
            "again (a retry with the same idempotency keys answers with its tasks)",
        ) from exc
    except BaseException:
        batch.release()
        raise
    if outcomes is None:
        # Stored, but which item became which task is unknown: the keys stay taken, so a
        # retry of the batch cannot store the tasks a second time.
        raise Problem(
            503, "unavailable", "the batch is stored but not announced; do not submit it again"
        )
    batch.settle(outcomes)
    return [batch.answer(index) for index in range(len(items))]


def _check_schemas(items: list[BatchItem]) -> None:
    """422 for the whole batch when an item breaks its kind's schema, as the document says.

    What the schema cannot say (a payload over the size limit, a key used before) is
    answered per item instead.
    """
    broken: list[str] = []
    for index, item in enumerate(items):
        try:
            validate_payload(item.kind, item.payload)
        except InvalidSubmission as exc:
            broken.append(f"items.{index}: {exc}")
    if broken:
        more = f"; and {len(broken) - 5} more" if len(broken) > 5 else ""
        raise Problem(422, "invalid-payload", "; ".join(broken[:5]) + more)


def _submit(svc: Service, office: str, items: list[BatchItem]) -> list[SubmitResult] | None:
    """The client's results; None when the tasks are stored but their results are unknown."""
    if not items:
        return []
    batch = [Submission(office, item.dossier, item.kind, item.payload) for item in items]
    try:
        return svc.clients.get().submit_many(batch)
    except Overloaded as exc:
        if exc.results is None or len(exc.results) != len(batch):
            return None  # stored, which item became which task unknown: as below
        raise
    except NotAnnounced as exc:
        # Stored, so they will run (the sweeper announces them): a success, as for one task.
        svc.clients.discard()
        known: list[SubmitResult] | None = getattr(exc, "results", None)
        if known is not None:
            return known
        if len(exc.task_ids) == len(batch):  # every item became a new task, in order
            return [SubmitResult(task_id) for task_id in exc.task_ids]
        return None
    except BrokerError as exc:
        svc.clients.discard()
        raise Problem(503, "unavailable", "the broker is unreachable") from exc
