"""The `/v1` HTTP API: submit, read and act on tasks; overview, dossiers and instructions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dispatcher.api.auth import Principal
from dispatcher.api.batch import BatchAnswer, BatchRequest, submit_batch
from dispatcher.api.models import (
    CURSOR_PATTERN,
    ActionOut,
    DossierRow,
    DossierView,
    HistoryOut,
    Id,
    InstructionOut,
    KindName,
    Overview,
    RestartRequest,
    SubmitRequest,
    TaskDetail,
    TaskOut,
    TaskPage,
    decode_cursor,
    encode_cursor,
)
from dispatcher.api.params import IdempotencyKey, Instant, Office, Severity, known_query
from dispatcher.api.problems import Problem, documented
from dispatcher.api.reads import TaskQuery
from dispatcher.api.service import Service
from dispatcher.api.throttle import LoginThrottle
from workers.kinds import kinds
from workers.vocabulary import ActionStatus, ActionType, InstructionStatus, TaskStatus, severity_of

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(known_query)],
    responses=documented(401, 413, 422, 429, 500, 503),
)
_bearer = HTTPBearer(auto_error=False, description="a token from `dossierflow users token`")


def service(request: Request) -> Service:
    """The app's service."""
    found: Service = request.app.state.service
    return found


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """The authenticated caller; 401 otherwise, 429 after too many failed tokens."""
    token = credentials.credentials if credentials else None
    if not token:
        return service(request).authenticate(None)
    throttle: LoginThrottle = request.app.state.throttle
    address = request.client.host if request.client else None
    throttle.check(address, token)
    try:
        return service(request).authenticate(token)
    except Problem:
        throttle.failed(address, token, "api")
        raise


Who = Annotated[Principal, Depends(principal)]
Svc = Annotated[Service, Depends(service)]


@router.post(
    "/tasks",
    status_code=201,
    response_model=TaskOut,
    responses={
        200: {"model": TaskOut, "description": "The task an earlier request with this key made"},
        **documented(403, 409),
    },
)
def submit(
    body: SubmitRequest, who: Who, svc: Svc, response: Response, key: IdempotencyKey = None
) -> TaskOut:
    """Submit a task for the token's office; a retried Idempotency-Key returns the same task."""
    task_id, new = svc.submit(who, body.dossier, body.kind, body.payload, key)
    if not new:
        response.status_code = 200
    response.headers["Location"] = f"/v1/tasks/{task_id}"
    return TaskOut.of(svc.reads.task(who, task_id))


@router.post("/task-batches", response_model=BatchAnswer, responses=documented(403))
def submit_tasks(body: BatchRequest, who: Who, svc: Svc) -> BatchAnswer:
    """Submit up to 1,000 tasks: one result per item, in order, each with its own key.

    An item's result is 201 with the new task, 200 with the task an earlier request with
    its key made (or an equal sync it joined), or its problem (422, 409).
    """
    return BatchAnswer(items=submit_batch(svc, who, body.items))


@router.get("/tasks/{task_id}", response_model=TaskDetail, responses=documented(404))
def get_task(task_id: Id, who: Who, svc: Svc) -> TaskDetail:
    """One task with its history and instructions."""
    view = svc.reads.task_with_history(who, task_id)
    language = who.user.language
    return TaskDetail(
        **TaskOut.of(view.task).model_dump(),
        payload=view.task.payload,
        result=view.task.result,
        history=[HistoryOut.of(h) for h in view.history],
        instructions=[InstructionOut.of(i, language) for i in view.instructions],
    )


@router.get("/tasks", response_model=TaskPage, responses=documented(404))
def list_tasks(
    who: Who,
    svc: Svc,
    *,
    office: Office = None,
    status: Annotated[list[TaskStatus] | None, Query()] = None,
    kind: KindName | None = None,
    dossier: Id | None = None,
    has_instruction: bool | None = None,
    severity: Severity | None = None,
    submitted_from: Instant | None = None,
    submitted_to: Instant | None = None,
    show_all: Annotated[bool, Query(alias="all")] = False,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="opaque: a `next_cursor`, passed as it is"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TaskPage:
    """Tasks newest first. Without status, has_instruction, severity or all: what needs a person
    (failed tasks and tasks with an open instruction)."""
    scope = svc.reads.list_scope(who, office, dossier)
    if kind is not None and kind not in kinds():
        raise Problem(422, "invalid-request", "kind: not a registered task kind")
    query = TaskQuery(
        statuses=tuple(status or ()),
        kind=kind,
        dossier=dossier,
        has_instruction=has_instruction,
        severity=severity_of(severity),
        submitted_from=submitted_from,
        submitted_to=submitted_to,
        show_all=show_all,
    )
    tasks, after = svc.reads.tasks(scope, query.filter(), decode_cursor(cursor), limit)
    return TaskPage(items=[TaskOut.of(t) for t in tasks], next_cursor=encode_cursor(after))


@router.get("/dossiers/{dossier}", response_model=DossierView, responses=documented(404))
def get_dossier(dossier: Id, who: Who, svc: Svc, office: Office = None) -> DossierView:
    """A dossier's stripe, counts, open instructions and latest tasks."""
    view = svc.reads.dossier_contents(who, office, dossier)
    return DossierView(
        summary=DossierRow.of(view.summary),
        tasks=[TaskOut.of(t) for t in view.tasks],
        instructions=[InstructionOut.of(i, who.user.language) for i in view.instructions],
    )


@router.get("/overview", response_model=Overview)
def overview(who: Who, svc: Svc, office: Office = None) -> Overview:
    """Every dossier of the office with its stripe and waiting, running and failed counts."""
    scope = who.scope(office, need_office=True)
    assert scope.office is not None
    rows = svc.reads.dossiers(scope)
    return Overview(office=scope.office, dossiers=[DossierRow.of(r) for r in rows])


@router.get("/instructions", response_model=list[InstructionOut], responses=documented(404))
def list_instructions(
    who: Who,
    svc: Svc,
    *,
    office: Office = None,
    dossier: Id | None = None,
    status: Literal["open", "resolved", "all"] = "open",
    severity: Severity | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 200,
) -> list[InstructionOut]:
    """Instructions in the user's scope, newest first (default: open ones)."""
    scope = svc.reads.list_scope(who, office, dossier)
    found = svc.reads.instructions(
        scope,
        dossier=dossier,
        status=None if status == "all" else InstructionStatus(status),
        severity=severity_of(severity),
        limit=limit,
    )
    return [InstructionOut.of(i, who.user.language) for i in found]


ACTED = {
    202: {"model": ActionOut, "description": "Recorded; the sequencer has not decided yet"},
    **documented(403, 404, 409),
}


def _answer(response: Response, action: ActionOut) -> ActionOut:
    response.status_code = 200 if action.status is ActionStatus.APPLIED else 202
    return action


@router.post("/tasks/{task_id}/restart", response_model=ActionOut, responses=ACTED)
def restart(
    task_id: Id, who: Who, svc: Svc, response: Response, body: RestartRequest | None = None
) -> ActionOut:
    """Run a failed task again, with a corrected payload if given (202 while pending)."""
    payload = body.payload if body is not None else None
    return _answer(response, ActionOut.of(svc.act(who, task_id, ActionType.RESTART, payload)))


@router.post("/tasks/{task_id}/cancel", response_model=ActionOut, responses=ACTED)
def cancel(task_id: Id, who: Who, svc: Svc, response: Response) -> ActionOut:
    """Never run the task; its dossier goes on (offices cancel activations only)."""
    return _answer(response, ActionOut.of(svc.act(who, task_id, ActionType.CANCEL, None)))


@router.post("/tasks/{task_id}/resolve", response_model=ActionOut, responses=ACTED)
def resolve(task_id: Id, who: Who, svc: Svc, response: Response) -> ActionOut:
    """The failure was fixed by hand in the package: skip the task, the dossier goes on."""
    return _answer(response, ActionOut.of(svc.act(who, task_id, ActionType.RESOLVE, None)))
