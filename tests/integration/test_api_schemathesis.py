"""The OpenAPI document tells the truth: Schemathesis runs every check over the whole API."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from broker.admin import Admin, with_vhost
from dispatcher.api.app import create_app
from dossierflow.settings import Settings
from store import Store
from tests.integration.live_api import serve
from tests.integration.test_api_access import seed
from tests.services import Endpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _document() -> dict[str, Any]:
    """The API's OpenAPI document, made without reaching any service."""
    settings = Settings.from_env()
    store = Store.connect(settings.mongo_url, "openapi-only")
    try:
        document: dict[str, Any] = create_app(settings, store).openapi()
    finally:
        store.close()
    return document


# Loaded at import so that each operation is a test of its own (the plugin's lazy fixture
# loader does not run on pytest 9); the calls go to the live API of the module.
admin_schema = schemathesis.openapi.from_dict(_document())
platform_schema = schemathesis.openapi.from_dict(_document())
# CI-sized: the coverage phase (every boundary and every schema violation, deterministic)
# runs once, as the admin; the platform user gets the fuzzing phase, with every check too.
platform_schema.config.phases.coverage.enabled = False
CI_SIZED = hsettings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))


@dataclass(frozen=True)
class Live:
    """The API under test, the tokens of the seeded users and the requests made per test."""

    base_url: str
    tokens: dict[str, str]
    calls: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def live(services: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """`dossierflow api` on a database and virtual host of this module, with seeded users."""
    name = f"t{uuid.uuid4().hex[:12]}"
    admin = Admin(services.rabbitmq_api)
    admin.create_vhost(name)
    settings = replace(
        Settings.from_env(),
        amqp_url=with_vhost(services.amqp_url, name),
        rabbitmq_api=services.rabbitmq_api,
        mongo_url=services.mongo_url,
        mongo_db=name,
    )
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    try:
        store.ensure_indexes()
        tokens = seed(store)
        log = tmp_path_factory.mktemp("api") / "api.log"
        with serve(settings, log) as (base_url, _pid):
            running = Live(base_url, tokens)
            started = time.monotonic()
            yield running
            print(
                f"\nschemathesis: {running.calls.total()} generated requests"
                f" in {time.monotonic() - started:.0f} s: {dict(running.calls)}"
            )
    finally:
        store.drop()
        store.close()
        admin.delete_vhost(name)


def _call(case: Any, live: Live, role: str) -> None:
    live.calls[f"{role} {case.meta.phase.name.value if case.meta else '?'}"] += 1
    token = live.tokens[role]
    # A generous timeout: the shared test database scans on every list (no speed is judged).
    headers = {"Authorization": f"Bearer {token}"}
    case.call_and_validate(base_url=live.base_url, headers=headers, timeout=60)


@platform_schema.parametrize()
@CI_SIZED
def test_the_api_keeps_its_contract_with_a_platform_user(case: Any, live: Live) -> None:
    _call(case, live, "platform")


@admin_schema.parametrize()
@CI_SIZED
def test_the_api_keeps_its_contract_with_an_admin(case: Any, live: Live) -> None:
    _call(case, live, "admin")
