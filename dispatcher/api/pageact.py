"""The page's buttons: restart (arrows), cancel (cross) and resolve, with typed corrections.

An office user corrects through the fields of `corrections`; the values are checked
against the kind's schema here, and a wrong one comes back on the task's page with the
error next to its field. Only support may send a whole payload as JSON.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dispatcher.api import corrections, pagelists
from dispatcher.api.pagebase import ID, Context, context, option, same_site
from dispatcher.api.problems import Problem
from store import Role
from workers.texts import LANGUAGES
from workers.vocabulary import ActionType

_MAX_FIELD = 300_000  # a support JSON payload; the body limit bounds the whole form


def _local(next_url: str, fallback: str) -> str:
    """A path of this site to go back to; never another site."""
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc or not next_url.startswith("/") or "\\" in next_url:
        return fallback
    return next_url


def _back(next_url: str, task_id: str, notice: str) -> str:
    """Where the person was, with the action's outcome."""
    parts = urlsplit(_local(next_url, f"/tasks/{task_id}"))
    dropped = ("notice=", "acted=", "fragment=")
    query = [p for p in parts.query.split("&") if p and not p.startswith(dropped)]
    query.append(urlencode({"notice": notice, "acted": task_id}))
    return f"{parts.path}?{'&'.join(query)}#task-{task_id}"


def _json_payload(text: str, role: Role) -> dict[str, Any] | None:
    if not text.strip():
        return None
    if role is not Role.SUPPORT:
        raise Problem(403, "forbidden", "only support edits a payload as JSON")
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise Problem(422, "invalid-payload", "the corrected payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise Problem(422, "invalid-payload", "the corrected payload must be an object")
    return payload


async def _checked_form(request: Request) -> tuple[Context, dict[str, str]]:
    """The user and the posted form, once its CSRF token is this login's."""
    same_site(request)
    ctx = await run_in_threadpool(context, request)
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str) and len(v) <= _MAX_FIELD}
    if not ctx.who.csrf_ok(request.app.state.secret, values.get("csrf", "")):
        raise Problem(403, "forbidden", "the form is stale: reload the page and try again")
    return ctx, values


async def choose_language(request: Request) -> Response:
    """The user's own language for the page ("": the browser's, else the office's)."""
    ctx, values = await _checked_form(request)
    language = values.get("language", "")
    if language not in ("", *LANGUAGES):
        raise Problem(422, "invalid-request", "unknown language")
    await run_in_threadpool(ctx.svc.set_language, ctx.who, language)
    return RedirectResponse(_local(values.get("next", ""), "/"), status_code=303)


async def act(request: Request, task_id: str, action: str) -> Response:
    """A restart, cancel or resolve button, confirmed with that one click."""
    try:
        kind = ActionType(action)
    except ValueError as exc:
        raise Problem(404, "not-found", "no such action") from exc
    ctx, values = await _checked_form(request)
    task_id = option(task_id, ID, "task") or ""
    payload = _json_payload(values.get("payload", ""), ctx.who.role)
    if kind is ActionType.RESTART and payload is None:
        task = await run_in_threadpool(ctx.svc.reads.task, ctx.who, task_id)
        given = corrections.submitted(values)
        if given:
            code = (task.error or {}).get("code")
            fixed, fields = corrections.corrected(task.kind, code, task.payload, given)
            if fixed is None:
                return await run_in_threadpool(
                    pagelists.task, request, ctx, task_id, 422, fields=fields
                )
            payload = fixed if fixed != task.payload else None
    record = await run_in_threadpool(ctx.svc.act, ctx.who, task_id, kind, payload)
    acted = await run_in_threadpool(ctx.svc.reads.task, ctx.who, task_id)
    request.app.state.page_snapshots.forget(acted.office, task_id)  # lists show it soon

    notice = f"{kind.value}-{record.status.value}"
    return RedirectResponse(_back(values.get("next", ""), task_id, notice), status_code=303)
