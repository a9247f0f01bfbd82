"""The monitoring page: server-rendered HTML with plain forms, served beside the API.

Login checks the pasted token and opens a server-side session (`store/sessions.py`); the
HttpOnly, SameSite=Strict cookie holds only the session's id. Every POST must come from
the page itself (`guard.py`), and every form that changes something carries a CSRF token
derived from the session. Templates autoescape.
Each page has a live part that a few lines of script refetch (`?fragment=1`) every few
seconds, so a restarted task is seen running without a reload and without a framework.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from dispatcher.api import pagelists, problems
from dispatcher.api.guard import Door
from dispatcher.api.i18n import N_
from dispatcher.api.pageact import act, choose_language
from dispatcher.api.pagebase import (
    ID,
    STATIC_DIR,
    Context,
    context,
    option,
    render,
    same_site,
)
from dispatcher.api.problems import Problem
from dispatcher.api.service import Service
from dispatcher.api.throttle import LoginThrottle
from store import Role
from store.sessions import Sessions

MESSAGES = {
    "not-found": N_("This does not exist, or it is not yours to see."),
    "forbidden": N_("You may not do this."),
    "action-refused": N_("This action is not possible now."),
    "invalid-request": N_("The request is not valid."),
    "invalid-payload": N_("The request is not valid."),
    "unavailable": N_("The system is busy: try again in a moment."),
    "too-many-requests": N_("The system is busy: try again in a moment."),
}


def overview_page(request: Request) -> Response:
    """The office overview: dossiers with their stripes, and what needs a person."""
    ctx = context(request)
    if ctx.who.role is Role.SUPPORT and ctx.office is None:
        offices = ctx.svc.reads.offices()
        return render(request, "offices.html", ctx, offices=offices)
    return pagelists.overview(request, ctx)


def tasks_page(request: Request) -> Response:
    """The monitoring list: filters in the URL, default failed plus open instruction."""
    return pagelists.tasks(request, context(request))


def dossier_page(request: Request, dossier: str) -> Response:
    """Monitoring dossier: one dossier's stripe, counts and task list."""
    ctx = context(request)
    return pagelists.dossier(request, ctx, option(dossier, ID, "dossier") or "")


def task_page(request: Request, task_id: str) -> Response:
    """One task: its instruction, the actions, the correction fields and its history."""
    ctx = context(request)
    return pagelists.task(request, ctx, option(task_id, ID, "task") or "")


def login_form(request: Request) -> Response:
    """Paste a token."""
    return render(request, "login.html", None, error="")


async def login(request: Request) -> Response:
    """Check the token and open a session; the cookie holds only the session's id."""
    same_site(request)
    form = await request.form()
    token = str(form.get("token") or "").strip()[:200]
    throttle: LoginThrottle = request.app.state.throttle
    address = request.client.host if request.client else None
    throttle.check(address, token)
    svc: Service = request.app.state.service
    try:
        who = await run_in_threadpool(svc.authenticate, token)
    except Problem:
        throttle.failed(address, token, "page")
        return render(request, "login.html", None, status=401, error=N_("Unknown token."))
    sessions: Sessions = request.app.state.sessions
    session_id = await run_in_threadpool(sessions.open, who.user.id, who.token_digest)
    door: Door = request.app.state.door
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        door.cookie, session_id, path="/", httponly=True, samesite="strict", secure=door.secure
    )
    return response


async def logout(request: Request) -> Response:
    """End the session: its cookie no longer logs in, even if replayed."""
    same_site(request)
    door: Door = request.app.state.door
    sessions: Sessions = request.app.state.sessions
    await run_in_threadpool(sessions.close, request.cookies.get(door.cookie))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(door.cookie, path="/", secure=door.secure, httponly=True)
    return response


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    if request.url.path.startswith("/v1"):
        return problems.response(exc)
    if exc.status == 401:
        return RedirectResponse("/login", status_code=303)
    message = MESSAGES.get(exc.slug, N_("Something went wrong."))
    page = render(
        request,
        "error.html",
        _quiet_context(request),
        status=exc.status,
        problem=exc,
        message=message,
    )
    page.headers.update(exc.headers)
    return page


def _quiet_context(request: Request) -> Context | None:
    """The user's context for an error page, if the cookie still logs in (else none)."""
    try:
        return context(request)
    except Problem:
        return None


def install(app: FastAPI) -> None:
    """Add the page's routes, its script and its HTML error answers.

    The page reads its lists from `app.state.page_snapshots` (built by `create_app`).
    """
    add = app.add_api_route
    add("/", overview_page, methods=["GET"], include_in_schema=False)
    add("/tasks", tasks_page, methods=["GET"], include_in_schema=False)
    add("/tasks/{task_id}", task_page, methods=["GET"], include_in_schema=False)
    add("/dossiers/{dossier}", dossier_page, methods=["GET"], include_in_schema=False)
    add("/tasks/{task_id}/{action}", act, methods=["POST"], include_in_schema=False)
    add("/language", choose_language, methods=["POST"], include_in_schema=False)
    add("/login", login_form, methods=["GET"], include_in_schema=False)
    add("/login", login, methods=["POST"], include_in_schema=False)
    add("/logout", logout, methods=["POST"], include_in_schema=False)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(Problem, _on_problem)
