"""The FastAPI application: the `/v1` API, the monitoring page and their error handling."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from dispatcher.api import pages, problems, routes
from dispatcher.api.service import ClientPool, Service
from dispatcher.client import Client
from dispatcher.settings import Settings
from store import Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENVELOPE_BYTES = 16 * 1024  # room for the fields around the payload


class BodyLimit:
    """Refuse a request whose declared body is over the limit before reading it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413 for a too large or malformed Content-Length."""
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                problem = problems.Problem(
                    413, "payload-too-large", f"the body limit is {self.limit} bytes"
                )
                await problems.response(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    store: Store,
    *,
    client_factory: Callable[[], Client] | None = None,
    action_wait_s: float = 10.0,
    secret: bytes | None = None,
) -> FastAPI:
    """The app serving the API and the page; close it with `app.state.service.clients.close()`."""
    factory = client_factory or (lambda: Client.connect(settings, store))
    app = FastAPI(
        title="dossierflow",
        version="1",
        description="Submit tasks to accounting packages and follow them.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = Service(store, ClientPool(factory), action_wait_s=action_wait_s)
    app.state.secret = secret or secrets.token_bytes(32)
    problems.install(app)
    app.include_router(routes.router)
    pages.install(app)
    app.add_middleware(BodyLimit, limit=settings.payload_limit_bytes + ENVELOPE_BYTES)
    return app
