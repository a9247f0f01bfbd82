"""The page's lists: the office overview, the monitoring list and "Monitoring dossier"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from dispatcher.api.corrections import LABELS
from dispatcher.api.pagebase import ID, KIND, Context, option, render
from dispatcher.api.problems import Problem
from dispatcher.api.reads import TaskQuery
from dispatcher.api.snapshot import Snapshot, Snapshots
from dispatcher.api.views import PAGE_SIZE, Row, decode_cursor, encode_cursor, row_of, rows_of
from store import Role
from store.monitoring import DossierSummary, Scope, TaskFilter
from workers.vocabulary import Severity, TaskStatus, severity_of

DOSSIERS_PER_PAGE = 100
ATTENTION_ROWS = 20  # the overview shows the first ones; the list has the rest
FILTERS = ("status", "kind", "dossier", "instruction", "severity", "submitted_from", "submitted_to")


def _day(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value[:10]).replace(tzinfo=UTC)
    except ValueError as exc:
        raise Problem(422, "invalid-request", f"{name} must be a date") from exc


def filters_of(request: Request, ctx: Context, dossier: str | None = None) -> dict[str, str]:
    """The list's filters as given in the URL (checked), without empty ones."""
    q = request.query_params
    form = {k: q[k][:64] for k in FILTERS if q.get(k)}
    if dossier is not None:
        form["dossier"] = dossier
    option(form.get("dossier"), ID, "dossier")
    option(form.get("kind"), KIND, "kind")
    status = form.get("status", "")
    if status and status != "all" and status not in {s.value for s in TaskStatus}:
        raise Problem(422, "invalid-request", "unknown status")
    if form.get("severity") and severity_of(form["severity"]) is None:
        raise Problem(422, "invalid-request", "unknown stripe colour")
    if form.get("instruction", "") not in ("", "yes", "no"):
        raise Problem(422, "invalid-request", "unknown instruction filter")
    return form


def task_query(form: dict[str, str]) -> TaskQuery:
    """The shared list query; no status, instruction or colour means what needs a person."""
    status = form.get("status", "")
    return TaskQuery(
        statuses=(TaskStatus(status),) if status and status != "all" else (),
        kind=form.get("kind"),
        dossier=form.get("dossier"),
        has_instruction={"yes": True, "no": False}.get(form.get("instruction", "")),
        severity=severity_of(form.get("severity")),
        submitted_from=_day(form.get("submitted_from"), "from"),
        submitted_to=_day(form.get("submitted_to"), "to"),
        show_all=status == "all",
    )


def snapshot(request: Request, scope: Scope) -> Snapshot | None:
    """The office's snapshot; None for support looking across every office."""
    snapshots: Snapshots = request.app.state.page_snapshots
    return snapshots.of(scope.office) if scope.office is not None else None


def _page(
    request: Request, ctx: Context, scope: Scope, f: TaskFilter, limit: int
) -> tuple[list[Row], str | None]:
    """A page of rows from the office's snapshot (across offices: from the store)."""
    cursor = decode_cursor(request.query_params.get("cursor"))
    snap = snapshot(request, scope)
    tasks, after = ctx.svc.reads.tasks(scope, f, cursor, limit, snap)
    instructions = ctx.svc.reads.open_instructions_of(scope, tasks, snap)
    return rows_of(ctx.who, tasks, instructions, ctx.speaker), encode_cursor(after)


def _list(request: Request, ctx: Context, form: dict[str, str], scope: Scope) -> dict[str, Any]:
    rows, after = _page(request, ctx, scope, task_query(form).filter(), PAGE_SIZE)
    keep = {**form, **({"office": ctx.office} if ctx.who.role is Role.SUPPORT else {})}
    next_url = f"?{urlencode({**keep, 'cursor': after})}" if after else ""
    first_url = f"?{urlencode(keep)}" if request.query_params.get("cursor") else ""
    return {"rows": rows, "next_url": next_url, "first_url": first_url, "form": form}


def tasks(request: Request, ctx: Context) -> Response:
    """The monitoring list with its filters."""
    form = filters_of(request, ctx)
    scope = ctx.svc.reads.list_scope(ctx.who, ctx.office)
    values = _list(request, ctx, form, scope)
    statuses = list(TaskStatus)
    return render(request, "tasks.html", ctx, statuses=statuses, **values)


def dossier(request: Request, ctx: Context, name: str) -> Response:
    """Monitoring dossier: the list of one dossier, with its stripe and counts."""
    scope = ctx.svc.reads.dossier_scope(ctx.who, ctx.office, name)
    rows = ctx.svc.reads.dossiers(scope, snapshot(request, scope))
    summary = rows[0] if rows else DossierSummary(scope.office or "", name, "")
    form = filters_of(request, ctx, dossier=name)
    values = _list(request, ctx, form, scope)
    return render(request, "dossier.html", ctx, summary=summary, dossier=name, **values)


def overview(request: Request, ctx: Context) -> Response:
    """Every dossier with its stripe, a page at a time, and what needs a person."""
    scope = ctx.svc.reads.list_scope(ctx.who, ctx.office)
    everything = ctx.svc.reads.dossiers(scope, snapshot(request, scope))
    show = request.query_params.get("show", "")
    chosen = [d for d in everything if d.stripe] if show == "striped" else everything
    pages = max(1, -(-len(chosen) // DOSSIERS_PER_PAGE))
    try:
        page = min(max(1, int(request.query_params.get("page", "1")[:6])), pages)
    except ValueError as exc:
        raise Problem(422, "invalid-request", "page must be a number") from exc
    shown = chosen[(page - 1) * DOSSIERS_PER_PAGE : page * DOSSIERS_PER_PAGE]
    rows, more = _page(request, ctx, scope, TaskQuery().filter(), ATTENTION_ROWS)
    counts = {
        "red": sum(1 for d in everything if d.stripe == Severity.RED),
        "orange": sum(1 for d in everything if d.stripe == Severity.ORANGE),
        "all": len(everything),
    }
    return render(
        request,
        "overview.html",
        ctx,
        dossiers=shown,
        counts=counts,
        page=page,
        pages=pages,
        show=show,
        rows=rows,
        more=more is not None,
    )


def task(
    request: Request, ctx: Context, task_id: str, status: int = 200, fields: Any = None
) -> Response:
    """A task's page (also with a refused correction's field errors, status 422)."""
    record = ctx.svc.reads.task(ctx.who, task_id)
    scope = ctx.who.scope(record.office)
    instruction = ctx.svc.reads.open_instructions_of(scope, [record]).get(record.id)
    text = ctx.speaker.instruction(instruction.code, instruction.facts) if instruction else None
    row = row_of(ctx.who, record, instruction, text)
    if fields is not None:
        row = replace(row, fields=fields)
    # The full history is a scan of every task's events on a server without indexes: on request.
    everything = request.query_params.get("history") == "all"
    history = ctx.svc.reads.history(record) if everything else None
    here = f"/tasks/{record.id}"  # also when a refused correction renders it from its POST
    return render(
        request,
        "task.html",
        ctx,
        status=status,
        row=row,
        task=record,
        history=history,
        here=here,
        labels=LABELS,
    )
