"""What every page handler needs: the user, the service, the speaker, and rendering."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from broker.messages import valid_id
from dispatcher.api.auth import Principal
from dispatcher.api.guard import Door, check_origin
from dispatcher.api.i18n import N_, Speaker, choose_language
from dispatcher.api.problems import Problem
from dispatcher.api.service import Service
from store import OfficeRecord, Role
from workers.kinds import kinds

ID = valid_id
KIND = re.compile(r"[a-z0-9_.]{1,64}").fullmatch
STATIC_DIR = Path(__file__).parent / "static"
_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    extensions=["jinja2.ext.i18n"],  # so Babel's extractor reads the templates as we do
)
templates = Jinja2Templates(env=_env)

NOTICES = {
    "restart-applied": N_("Restarted: the task runs again."),
    "restart-pending": N_("Restart requested: it follows in the dossier's order."),
    "restart-refused": N_("The restart was refused."),
    "cancel-applied": N_("Cancelled: the dossier goes on with its next task."),
    "cancel-pending": N_("Cancel requested: it follows in the dossier's order."),
    "cancel-refused": N_("The cancel was refused."),
    "resolve-applied": N_("Marked as fixed by hand: the dossier goes on."),
    "resolve-pending": N_("Requested: it follows in the dossier's order."),
    "resolve-refused": N_("The request was refused."),
}
_NOT_KEPT = ("fragment", "notice", "acted")  # query parameters a form's way back drops


@dataclass(frozen=True)
class Context:
    """One request's user, service, language and office (None: support chose none)."""

    who: Principal
    svc: Service
    speaker: Speaker
    office: str | None


def option(value: str | None, valid: Callable[[str], object], name: str) -> str | None:
    """A query value that `valid` accepts, or None when empty; 422 otherwise."""
    if not value:
        return None
    if not valid(value):
        raise Problem(422, "invalid-request", f"{name} is not a valid value")
    return value


def speaker_for(request: Request, who: Principal | None, office: OfficeRecord | None) -> Speaker:
    """The user's language (setting, browser, office) in the office's time zone."""
    language = choose_language(
        who.user.language if who else None,
        request.headers.get("accept-language"),
        office.language if office else None,
    )
    return Speaker.of(language, office.timezone if office else None)


def context(request: Request) -> Context:
    """Authenticate the cookie's session; the office is the user's (support: `?office=`)."""
    svc: Service = request.app.state.service
    door: Door = request.app.state.door
    session_id = request.cookies.get(door.cookie)
    who = svc.authenticate_session(request.app.state.sessions, session_id)
    if who.role is Role.SUPPORT:
        office = option(request.query_params.get("office"), ID, "office")
    else:
        office = who.user.office
    record = svc.reads.office(office) if office else None
    return Context(who, svc, speaker_for(request, who, record), office)


def render(
    request: Request, name: str, ctx: Context | None, *, status: int = 200, **values: Any
) -> HTMLResponse:
    """A page (or only its live part, for `?fragment=1`) in the speaker's language."""
    speaker: Speaker = values.pop("speaker", None) or (
        ctx.speaker if ctx else speaker_for(request, None, None)
    )
    who = ctx.who if ctx else None
    csrf = who.csrf_token(request.app.state.secret) if who else ""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in _NOT_KEPT]
    here = request.url.path + (f"?{urlencode(kept)}" if kept else "")
    response = templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "csrf": csrf,
            "roles": Role,
            "sp": speaker,
            "_": speaker.gettext,
            "gettext": speaker.gettext,
            "ngettext": speaker.ngettext,
            "office": ctx.office if ctx else None,
            "fragment": request.query_params.get("fragment") == "1",
            "here": here,
            "notice": request.query_params.get("notice", ""),
            "acted": option(request.query_params.get("acted"), ID, "acted"),
            "notices": NOTICES,
            "kinds": kinds(),
            **values,
        },
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Language"] = speaker.language
    return response


def same_site(request: Request) -> None:
    """403 for a POST a browser sent from another site (see `guard.check_origin`)."""
    check_origin(request.app.state.door, dict(request.headers), request.headers.get("host", ""))
