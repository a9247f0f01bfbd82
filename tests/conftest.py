"""Fixtures on the real services: a virtual host and a database of its own per test."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from broker.admin import Admin, with_vhost
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from store import Store
from tests.services import Endpoints, endpoints


@pytest.fixture(scope="session")
def services() -> Endpoints:
    """The real RabbitMQ and MongoDB-compatible server (fails if there are none)."""
    return endpoints()


@pytest.fixture
def name() -> str:
    """A name unique to this test, for its virtual host and database."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(services: Endpoints, name: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings of this test: its own virtual host, database and simulated package."""
    admin = Admin(services.rabbitmq_api)
    admin.create_vhost(name)
    base = Settings.from_env()
    yield replace(
        base,
        amqp_url=with_vhost(services.amqp_url, name),
        rabbitmq_api=services.rabbitmq_api,
        mongo_url=services.mongo_url,
        mongo_db=name,
        partitions=4,
        simpackage_path=tmp_path / "package.sqlite3",
        sweep_interval_s=1.0,
        log_level="debug",
    )
    admin.delete_vhost(name)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """This test's database, dropped afterwards."""
    db = Store.connect(settings.mongo_url, settings.mongo_db)
    db.ensure_indexes()
    yield db
    db.drop()
    db.close()


@pytest.fixture
def make_cluster(
    settings: Settings, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Cluster]]:
    """Real dossierflow processes in this test's virtual host; stopped afterwards.

    Keyword arguments override settings (e.g. `simpackage_latency_ms="20,40"`). Process
    logs are kept under test-artifacts/<test name>/ for diagnosis, those of an earlier
    run of the test removed first: tests read them and must not find an old run's lines.
    """
    started: list[Cluster] = []
    shutil.rmtree(Path("test-artifacts") / request.node.name, ignore_errors=True)

    def make(**overrides: Any) -> Cluster:
        logs = Path("test-artifacts") / request.node.name
        running = Cluster(
            replace(settings, **overrides),
            vhost=settings.mongo_db,
            database=settings.mongo_db,
            log_dir=logs,
        )
        running.log_dir.mkdir(parents=True, exist_ok=True)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop(timeout=20)
