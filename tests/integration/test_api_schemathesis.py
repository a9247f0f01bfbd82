"""The OpenAPI document tells the truth: Schemathesis runs every check over the whole API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from broker.admin import Admin, with_vhost
from dispatcher.api.app import create_app
from dispatcher.settings import Settings
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
schema = schemathesis.openapi.from_dict(_document())
CI_SIZED = hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


@dataclass(frozen=True)
class Live:
    """The API under test and the tokens of the seeded users."""

    base_url: str
    tokens: dict[str, str]


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
            yield Live(base_url, tokens)
    finally:
        store.drop()
        store.close()
        admin.delete_vhost(name)


def _call(case: Any, live: Live, role: str) -> None:
    token = live.tokens[role]
    case.call_and_validate(base_url=live.base_url, headers={"Authorization": f"Bearer {token}"})


@schema.parametrize()
@CI_SIZED
def test_the_api_keeps_its_contract_with_a_platform_user(case: Any, live: Live) -> None:
    _call(case, live, "platform")


@schema.parametrize()
@CI_SIZED
def test_the_api_keeps_its_contract_with_an_admin(case: Any, live: Live) -> None:
    _call(case, live, "admin")
