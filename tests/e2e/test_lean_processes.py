"""A connector is a lean process: it loads neither the HTTP API nor the page's or mails' code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from broker import topology
from broker.admin import Admin
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# Top-level packages only the API, the page or the mails use (pydantic is not one: the
# connector validates payloads with the kinds' schemas).
HEAVY = {"fastapi", "starlette", "uvicorn", "jinja2", "babel", "aiosmtpd"}


def _imported(importtime_log: str) -> set[str]:
    """Top-level packages named in a `python -X importtime` log."""
    found = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            found.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return found


def test_a_connector_loads_neither_the_api_nor_the_mail_code(
    settings: Settings, tmp_path: Path
) -> None:
    env = Cluster(settings, settings.mongo_db, settings.mongo_db, tmp_path).env()
    stderr = tmp_path / "worker.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "dossierflow", "worker", "--office", "o1"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        admin = Admin(settings.rabbitmq_api)
        queue = topology.work_queue("o1")

        def consuming() -> bool:
            assert proc.poll() is None, stderr.read_text()[-2000:]
            try:
                return bool(admin.queue(settings.mongo_db, queue).get("consumers"))
            except Exception:
                return False

        wait_for(consuming, 60, "the connector to consume its work queue")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    imported = _imported(stderr.read_text())
    assert {"dossierflow", "workers", "broker", "pika"} <= imported  # the log is read right
    assert imported & HEAVY == set()
