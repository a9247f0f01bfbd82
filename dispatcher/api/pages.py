"""The monitoring page: server-rendered HTML with plain forms, served beside the API.

Login stores the pasted token in an HttpOnly, SameSite=Strict cookie; every form that
changes something carries a CSRF token derived from that login. Templates autoescape.
"""

from __future__ import annotations

import hmac
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from dispatcher.api import problems, routes
from dispatcher.api.auth import Principal
from dispatcher.api.problems import Problem
from dispatcher.api.service import Service
from store import ActionType, Role, TaskStatus

COOKIE = "dossierflow_token"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KIND = re.compile(r"[a-z0-9_.]{1,64}")
_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
templates = Jinja2Templates(env=_env)


def _svc(request: Request) -> Service:
    return routes.service(request)


def _who(request: Request) -> Principal:
    return _svc(request).authenticate(request.cookies.get(COOKIE))


def _render(request: Request, name: str, who: Principal | None, **context: Any) -> HTMLResponse:
    csrf = who.csrf_token(request.app.state.secret) if who else ""
    return templates.TemplateResponse(
        request, name, {"who": who, "csrf": csrf, "roles": Role, **context}
    )


def _opt(value: str | None, pattern: re.Pattern[str], name: str) -> str | None:
    if not value:
        return None
    if not pattern.fullmatch(value):
        raise Problem(422, "invalid-request", f"{name} is not a valid value")
    return value


def _day(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError as exc:
        raise Problem(422, "invalid-request", f"{name} must be a date") from exc


def overview_page(request: Request, office: str | None = None) -> Response:
    """The office overview with stripes, and what needs a person."""
    who, svc = _who(request), _svc(request)
    office = _opt(office, _ID, "office")
    if who.role is Role.SUPPORT and office is None:
        offices = svc.store.find_offices()
        return _render(request, "offices.html", who, offices=offices)
    data = routes.overview(who, svc, office)
    page = routes.list_tasks(who, svc, office=office, limit=50)
    return _render(request, "overview.html", who, overview=data, page=page, office=office)


def tasks_page(
    request: Request,
    *,
    office: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    dossier: str | None = None,
    instruction: str | None = None,
    severity: str | None = None,
    submitted_from: str | None = None,
    submitted_to: str | None = None,
    cursor: str | None = None,
) -> Response:
    """The task list with the default filter and the other filters."""
    who, svc = _who(request), _svc(request)
    try:
        statuses = [TaskStatus(status)] if status and status != "all" else None
    except ValueError as exc:
        raise Problem(422, "invalid-request", "unknown status") from exc
    page = routes.list_tasks(
        who, svc,
        office=_opt(office, _ID, "office"),
        status=statuses,
        kind=_opt(kind, _KIND, "kind"),
        dossier=_opt(dossier, _ID, "dossier"),
        has_instruction={"yes": True, "no": False}.get(instruction or ""),
        severity=severity if severity in ("orange", "red") else None,  # type: ignore[arg-type]
        submitted_from=_day(submitted_from, "from"),
        submitted_to=_day(submitted_to, "to"),
        show_all=status == "all",
        cursor=cursor[:300] if cursor else None,
        limit=50,
    )  # fmt: skip
    form = dict(request.query_params)
    return _render(request, "tasks.html", who, page=page, form=form, statuses=list(TaskStatus))


def task_page(request: Request, task_id: str, notice: str = "") -> Response:
    """One task: history, instructions, and the buttons of the actions."""
    who, svc = _who(request), _svc(request)
    task = routes.get_task(_opt(task_id, _ID, "task") or "", who, svc)
    return _render(request, "task.html", who, task=task, notice=notice[:300])


def dossier_page(request: Request, dossier: str, office: str | None = None) -> Response:
    """One dossier: stripe, counts, instructions and tasks."""
    who, svc = _who(request), _svc(request)
    view = routes.get_dossier(
        _opt(dossier, _ID, "dossier") or "", who, svc, _opt(office, _ID, "office")
    )
    return _render(request, "dossier.html", who, view=view, office=office)


def act(
    request: Request,
    task_id: str,
    action: ActionType,
    csrf: Annotated[str, Form(max_length=128)],
    payload: Annotated[str, Form(max_length=300_000)] = "",
) -> Response:
    """A restart, cancel or resolve button."""
    who, svc = _who(request), _svc(request)
    if not hmac.compare_digest(csrf, who.csrf_token(request.app.state.secret)):
        raise Problem(403, "forbidden", "the form is stale: reload the page and try again")
    corrected: dict[str, Any] | None = None
    if payload.strip():
        try:
            corrected = json.loads(payload)
        except ValueError as exc:
            raise Problem(422, "invalid-payload", "the corrected payload is not JSON") from exc
        if not isinstance(corrected, dict):
            raise Problem(422, "invalid-payload", "the corrected payload must be an object")
    task_id = _opt(task_id, _ID, "task") or ""
    record = svc.act(who, task_id, action, corrected)
    notice = f"{action.value}: {record.status.value}"
    return RedirectResponse(f"/tasks/{task_id}?notice={notice}", status_code=303)


def login_form(request: Request) -> Response:
    """Paste a token."""
    return _render(request, "login.html", None, error="")


def login(request: Request, token: Annotated[str, Form(max_length=200)]) -> Response:
    """Check the token and keep it in an HttpOnly cookie."""
    try:
        _svc(request).authenticate(token.strip())
    except Problem:
        return _render(request, "login.html", None, error="Unknown token")
    response = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", secure=secure)
    return response


def logout(request: Request) -> Response:
    """Forget the token."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    if request.url.path.startswith("/v1"):
        return problems.response(exc)
    if exc.status == 401:
        return RedirectResponse("/login", status_code=303)
    response = _render(request, "error.html", None, problem=exc)
    response.status_code = exc.status
    return response


def install(app: FastAPI) -> None:
    """Add the page's routes and its HTML error answers."""
    add = app.add_api_route
    add("/", overview_page, methods=["GET"], include_in_schema=False)
    add("/tasks", tasks_page, methods=["GET"], include_in_schema=False)
    add("/tasks/{task_id}", task_page, methods=["GET"], include_in_schema=False)
    add("/dossiers/{dossier}", dossier_page, methods=["GET"], include_in_schema=False)
    add("/tasks/{task_id}/{action}", act, methods=["POST"], include_in_schema=False)
    add("/login", login_form, methods=["GET"], include_in_schema=False)
    add("/login", login, methods=["POST"], include_in_schema=False)
    add("/logout", logout, methods=["POST"], include_in_schema=False)
    app.add_exception_handler(Problem, _on_problem)
