"""Errors of the HTTP API as `application/problem+json` (RFC 9457), one stable type each.

Every error leaves the API through these handlers, so a client can rely on the `type`
URI and no stack trace or input value (which may hold personal data) is echoed back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from store import StoreError, StoreUnavailable

MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger("dossierflow.api")

TITLES = {
    "unauthorized": "Missing or unknown bearer token",
    "forbidden": "Not allowed for this user",
    "not-found": "No such resource",
    "invalid-request": "The request does not have the expected form",
    "invalid-payload": "The task is not valid",
    "payload-too-large": "The request body is over the size limit",
    "action-refused": "The action does not apply to the task in its state",
    "idempotency-key-reused": "The idempotency key was used for another request",
    "too-many-requests": "Too many requests: retry after the given seconds",
    "too-many-waiting": "The office has too many tasks waiting: retry after the given seconds",
    "office-required": "Support must choose an office",
    "method-not-allowed": "Method not allowed",
    "unavailable": "A backing service is unavailable",
    "internal": "Internal error",
}


STATUS_TYPES: dict[int, tuple[str, ...]] = {
    401: ("unauthorized",),
    403: ("forbidden",),
    404: ("not-found",),
    409: ("action-refused", "idempotency-key-reused"),
    413: ("payload-too-large",),
    422: ("invalid-request", "invalid-payload", "office-required"),
    429: ("too-many-requests", "too-many-waiting"),
    500: ("internal",),
    503: ("unavailable",),
}
"""The problem types each status can carry, as the OpenAPI document lists them."""

SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error (RFC 9457). `type` is stable; `detail` is for people.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "enum": [f"/problems/{slug}" for slug in TITLES]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "where the request is wrong (invalid-request only)",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these statuses: problem documents of the types each can carry."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        types = STATUS_TYPES[status]
        narrowed = {
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {
                    "properties": {
                        "type": {"enum": [f"/problems/{slug}" for slug in types]},
                        "status": {"const": status},
                    }
                },
            ]
        }
        answers[status] = {
            "description": "; ".join(f"`{slug}`: {TITLES[slug]}" for slug in types),
            "content": {MEDIA_TYPE: {"schema": narrowed}},
        }
    if 401 in answers:
        answers[401]["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}
        }
    return answers


class Problem(Exception):
    """An error answered as problem+json: HTTP status, a type slug and a detail."""

    def __init__(
        self, status: int, slug: str, detail: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail or TITLES.get(slug, slug))
        self.status = status
        self.slug = slug
        self.detail = detail or TITLES.get(slug, slug)
        self.headers = dict(headers or {})

    def document(self) -> dict[str, Any]:
        """The problem document."""
        return {
            "type": f"/problems/{self.slug}",
            "title": TITLES.get(self.slug, self.slug),
            "status": self.status,
            "detail": self.detail,
        }


def response(problem: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The HTTP response of a problem."""
    headers = {
        **problem.headers,
        **(headers or {}),
        **({"WWW-Authenticate": "Bearer"} if problem.status == 401 else {}),
        # A passing outage (the client already waited through a short one): try again soon.
        **({"Retry-After": "5"} if problem.status == 503 else {}),
    }
    return JSONResponse(
        problem.document(), status_code=problem.status, media_type=MEDIA_TYPE, headers=headers
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and what, without the offending input values."""
    return [
        {"loc": [str(p)[:40] for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200]}
        for e in exc.errors()[:10]
    ]


async def _on_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return response(exc)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problem = Problem(
        422,
        "invalid-request",
        "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in _field_errors(exc)),
    )
    body = {**problem.document(), "errors": _field_errors(exc)}
    return JSONResponse(body, status_code=422, media_type=MEDIA_TYPE)


def _allowed(request: Request) -> str:
    """Every method some route of this path takes (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed"}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request)
    # A body that is not even text (FastAPI's 400) is malformed like any other: 422.
    status = 422 if exc.status_code == 400 else exc.status_code
    return response(Problem(status, slug.get(status, "invalid-request")), headers)


async def _on_store(_request: Request, exc: Exception) -> JSONResponse:
    log.error("api.store_error", error=type(exc).__name__)
    if isinstance(exc, StoreUnavailable):
        return response(Problem(503, "unavailable", "the database is unreachable"))
    return response(Problem(500, "internal"))


async def _on_crash(_request: Request, exc: Exception) -> JSONResponse:
    # Only the type is logged: the message may quote input; the server logs the traceback.
    log.error("api.crash", error=type(exc).__name__)
    return response(Problem(500, "internal"))


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""
    app.add_exception_handler(Exception, _on_crash)
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(StoreError, _on_store)
