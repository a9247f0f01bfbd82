"""`dossierflow api` as a real process on a free local port, for tests that need real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx

from dossierflow.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(settings: Settings, log_path: Path) -> Iterator[tuple[str, int]]:
    """Run the API on this test's database and virtual host: (base URL, pid)."""
    port = _free_port()
    env = {
        **os.environ,
        "DOSSIERFLOW_MONGO_URL": settings.mongo_url,
        "DOSSIERFLOW_MONGO_DB": settings.mongo_db,
        "DOSSIERFLOW_AMQP_URL": settings.amqp_url,
        "DOSSIERFLOW_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "dossierflow.cli", "api", "--host", "127.0.0.1"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
            yield base, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=20)
