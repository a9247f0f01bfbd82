"""The link in an instruction mail opens that dossier's page for the people it is sent to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dossierflow.settings import Settings
from reminder.render import dossier_link
from store import Store
from tests.integration.test_api_access import seed
from tests.integration.test_monitoring_views import log_in

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def page(settings: Settings, store: Store) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(settings, store, action_wait_s=0.0)
    tokens = seed(store)
    with TestClient(app) as client:
        yield client, tokens
    app.state.service.clients.close()


@pytest.mark.parametrize(
    ("reader", "office", "dossier"),
    [("admin", "office1", "d1"), ("manager-d1", "office1", "d1"), ("support", "office2", "e1")],
)
def test_the_mailed_dossier_link_opens_the_dossier_page(
    page: tuple[TestClient, dict[str, str]], reader: str, office: str, dossier: str
) -> None:
    client, tokens = page
    log_in(client, tokens[reader])
    response = client.get(dossier_link("http://testserver", office, dossier))
    assert response.status_code == 200, response.text[:300]
    assert dossier in response.text
