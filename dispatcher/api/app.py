"""The FastAPI application: the `/v1` API, the monitoring page and their error handling."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from fastapi import FastAPI

from dispatcher.api import metrics, openapi, pages, problems, routes
from dispatcher.api.batch import BATCH_BODY_BYTES
from dispatcher.api.bodylimit import ENVELOPE_BYTES, BodyLimit
from dispatcher.api.changes import ChangeFeed
from dispatcher.api.service import ClientPool, Service
from dispatcher.client import Client
from dispatcher.settings import Settings
from store import Store


def create_app(
    settings: Settings,
    store: Store,
    *,
    client_factory: Callable[[], Client] | None = None,
    action_wait_s: float = 10.0,
    secret: bytes | None = None,
    changes: ChangeFeed | None = None,
) -> FastAPI:
    """The app serving the API and the page; close it with `app.state.service.clients.close()`.

    `changes`: the sequencer's change notices, so the page reads only what changed.
    """

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
    app.state.changes = changes

    problems.install(app)
    app.include_router(routes.router)
    pages.install(app)
    if settings.api_metrics:
        metrics.install(app, store, settings.metrics_store_interval_s)
    limit = settings.payload_limit_bytes + ENVELOPE_BYTES
    larger = {"/v1/task-batches": max(limit, BATCH_BODY_BYTES)}
    app.add_middleware(BodyLimit, limit=limit, larger=larger)
    openapi.install(app)
    return app
