"""Serve the API and the page beside a running demo: an admin of office1 and its token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import uvicorn

from dispatcher.api.app import create_app
from dispatcher.api.changes import ChangeFeed
from dossierflow.settings import Settings
from store import Role, Store, UserRecord

DEMO_OFFICE = "office1"
DEMO_USER = "demo-admin"


class Server:
    """A uvicorn server in a background thread."""

    def __init__(self, app: object, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=host, port=port, log_config=None, ws="none", lifespan="off", log_level="warning",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        """Start serving; return once the socket listens."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)


def serve_for_demo(
    settings: Settings, database: str, port: int, host: str = "127.0.0.1"
) -> tuple[str, str, Callable[[], None]]:
    """Start the API on `database`; return its URL, an admin token of office1 and a stop."""
    settings = replace(settings, mongo_db=database)
    store = Store.connect(settings.mongo_url, database)
    store.ensure_indexes()
    # No language of its own: the page speaks the browser's language, else the office's.
    store.users.save(UserRecord(id=DEMO_USER, office=DEMO_OFFICE, role=Role.ADMIN))
    token = store.tokens.issue(DEMO_USER)
    changes = ChangeFeed(settings.amqp_url).start()
    app = create_app(settings, store, changes=changes)
    app.state.page_snapshots.warm([DEMO_OFFICE])
    server = Server(app, host, port)
    server.start()

    def stop() -> None:
        server.stop()
        changes.close()
        app.state.service.clients.close()

        store.close()

    return f"http://{host}:{port}/", token, stop
