"""The FastAPI application: the `/v1` API, the monitoring page and their error handling."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi import FastAPI

from dispatcher.api import metrics, openapi, pages, problems, routes
from dispatcher.api.admission import Admission
from dispatcher.api.batch import BATCH_BODY_BYTES
from dispatcher.api.bodylimit import ENVELOPE_BYTES, BodyLimit
from dispatcher.api.changes import ChangeFeed
from dispatcher.api.guard import Door, SecurityHeaders
from dispatcher.api.service import ClientPool, Service
from dispatcher.api.snapshot import Snapshots
from dispatcher.api.throttle import LoginThrottle
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
    service = Service(
        store, ClientPool(factory), Admission.of(settings, store), action_wait_s=action_wait_s
    )
    app.state.service = service
    app.state.page_snapshots = Snapshots(service.monitoring, changes=changes)
    door = Door.of(settings, secret)
    app.state.door = door
    app.state.secret = door.secret
    app.state.sessions = store.sessions(
        timedelta(seconds=settings.session_idle_s), timedelta(seconds=settings.session_max_s)
    )
    app.state.throttle = LoginThrottle(settings.login_failures, settings.login_window_s)
    app.state.changes = changes

    problems.install(app)
    app.include_router(routes.router)
    pages.install(app)
    if settings.api_metrics:
        metrics.install(app, store, settings.metrics_store_interval_s)
    limit = settings.payload_limit_bytes + ENVELOPE_BYTES
    larger = {"/v1/task-batches": max(limit, BATCH_BODY_BYTES)}
    app.add_middleware(BodyLimit, limit=limit, larger=larger)
    app.add_middleware(SecurityHeaders, hsts=door.secure)
    openapi.install(app)
    return app
