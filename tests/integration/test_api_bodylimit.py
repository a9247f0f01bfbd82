"""Request bodies are bounded as they arrive, chunked ones included, before authentication."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dispatcher.api.bodylimit import ENVELOPE_BYTES
from dossierflow.settings import Settings
from store import Store
from tests.integration.live_api import serve
from tests.integration.test_api_access import seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROBLEM = "application/problem+json"
CHUNK = 64 * 1024
HUGE = 500 * 1024 * 1024


def _chunks(total: int, sent: list[int]) -> Iterator[bytes]:
    """`total` bytes in CHUNK pieces, counting in `sent` what the client handed over."""
    piece = b"x" * CHUNK
    while sent[0] < total:
        sent[0] += CHUNK
        yield piece


def test_a_chunked_body_over_the_limit_is_refused_before_authentication(
    settings: Settings, store: Store
) -> None:
    app = create_app(settings, store)
    limit = settings.payload_limit_bytes + ENVELOPE_BYTES
    with TestClient(app) as http:
        sent = [0]
        answer = http.post("/v1/tasks", content=_chunks(limit + CHUNK, sent))
        assert answer.status_code == 413, answer.text  # not 401: no token was sent
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json()["type"] == "/problems/payload-too-large"
        assert "content-length" not in answer.request.headers  # it really was chunked


def test_a_chunked_body_under_the_limit_reaches_the_endpoint(
    settings: Settings, store: Store
) -> None:
    app = create_app(settings, store)
    token = seed(store)["admin"]
    body = b'{"dossier": "d1", "kind": "dossier.activate", "payload": {"dossier_code": "c1"}}'
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        answer = http.post(
            "/v1/tasks",
            content=iter([body[:10], body[10:]]),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 201, answer.text
    app.state.service.clients.close()


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


@pytest.fixture
def live_api(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`dossierflow api` on a free local port: (base URL, pid)."""
    with serve(settings, tmp_path / "api.log") as running:
        yield running


def test_a_500_mb_chunked_upload_gets_an_early_413_and_server_memory_stays_flat(
    live_api: tuple[str, int],
) -> None:
    base, pid = live_api
    before = _memory_kib(pid)
    sent = [0]
    started = time.monotonic()
    with httpx.Client(timeout=60) as client:
        answer = client.post(f"{base}/v1/tasks", content=_chunks(HUGE, sent))
    elapsed = time.monotonic() - started
    after = _memory_kib(pid)
    print(
        f"\n413 after the client handed over {sent[0] / 2**20:.1f} MiB of {HUGE / 2**20:.0f} MiB"
        f" in {elapsed * 1000:.0f} ms; server RSS {before['VmRSS'] / 1024:.1f} ->"
        f" {after['VmRSS'] / 1024:.1f} MiB, peak {after['VmHWM'] / 1024:.1f} MiB"
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"] == "/problems/payload-too-large"
    assert sent[0] < HUGE // 10  # early: the server closed the connection long before the end
    assert after["VmHWM"] - before["VmRSS"] < 32 * 1024  # flat: nothing like the body is held
    # The server still answers after the refused upload.
    assert httpx.get(f"{base}/openapi.json", timeout=5).status_code == 200
