"""The monitoring page in headless Chromium: log in, see stripes, restart and cancel."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from dispatcher.api.demo import serve_for_demo
from dispatcher.cluster import Cluster
from dispatcher.settings import Settings
from dispatcher.workload import booking, company_code
from store import Store, TaskStatus
from tests.e2e.helpers import client_for, package_with
from tests.integration.test_api_flow import free_port
from tests.waiting import wait_for
from workers.accounting.simulated import SimulatedPackage

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

OFFICE = "office1"
SCREENSHOT = Path("test-artifacts") / "monitoring-page.png"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's headless Chromium with a fresh profile."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.set_page_load_timeout(30)
        yield driver
        driver.quit()


def _landed(driver: webdriver.Chrome, element_id: str) -> str:
    """The text of an element of the page a click leads to, once that page is there."""
    found = wait_for(lambda: driver.find_elements(By.ID, element_id), 30, f"#{element_id}")
    return str(found[0].text)


def _status(driver: webdriver.Chrome, base: str, task_id: str) -> str:
    driver.get(f"{base}tasks/{task_id}")
    return str(driver.find_element(By.ID, "status").text)


def _failed_tasks(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> tuple[SimulatedPackage, Cluster, tuple[str, str, str, str]]:
    """A cluster with an orange, an orange activation, a red and a done task."""
    package = package_with(settings.simpackage_path, OFFICE, ["period", "code", "broken", "fine"])
    package.close_period(company_code(OFFICE, "period"), "2024-05")
    package.break_database(company_code(OFFICE, "broken"))
    cluster = make_cluster()
    cluster.start_dispatcher()
    cluster.start_worker(OFFICE, "worker-0")
    client = client_for(cluster, store)

    def book(dossier: str, **changes: object) -> str:
        payload = booking(company_code(OFFICE, dossier), "p1", random.Random(dossier))
        payload.update(changes)
        return client.submit(OFFICE, dossier, "booking_proposal.process", payload)

    period = book("period", period="2024-05")
    activation = client.submit(OFFICE, "code", "dossier.activate", {"dossier_code": "TYPO"})
    broken = book("broken")
    fine = book("fine")
    client.close()
    for task_id in (period, activation, broken):
        wait_for(
            lambda t=task_id: (s := store.task(t)) and s.status is TaskStatus.FAILED,  # type: ignore[misc]
            90,
            f"task {task_id} failed",
        )
        # The instruction is written just after the failure: the stripes need it.
        wait_for(lambda t=task_id: store.find_instructions(task_id=t), 30, f"{task_id} instructed")  # type: ignore[misc]
    wait_for(lambda: (s := store.task(fine)) and s.status is TaskStatus.DONE, 60, "fine done")

    return package, cluster, (period, activation, broken, fine)


def test_an_admin_restarts_and_cancels_failed_tasks_from_the_page(
    settings: Settings,
    store: Store,
    make_cluster: Callable[..., Cluster],
    browser: webdriver.Chrome,
) -> None:
    package, cluster, (period, activation, broken, fine) = _failed_tasks(
        settings, store, make_cluster
    )
    base, token, stop = serve_for_demo(
        replace(settings, amqp_url=cluster.amqp_url), settings.mongo_db, free_port()
    )
    try:
        browser.get(base)
        assert "/login" in browser.current_url
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "login").click()
        rows = wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, "#overview tr[data-dossier]"),
            20,
            "the overview",
        )
        stripes = {r.get_attribute("data-dossier"): r.get_attribute("class") for r in rows}
        assert stripes == {
            "broken": "stripe-red",
            "code": "stripe-orange",
            "fine": "stripe-",
            "period": "stripe-orange",
        }
        listed = {
            r.get_attribute("data-task")
            for r in browser.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task]")
        }
        assert listed == {period, activation, broken}  # the default filter
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))

        browser.find_element(By.LINK_TEXT, "Tasks").click()
        browser.find_element(By.NAME, "status").send_keys("done")
        browser.find_element(By.ID, "filter").click()
        wait_for(lambda: "status=done" in browser.current_url, 20, "the filtered list")
        shown = browser.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task]")
        assert [r.get_attribute("data-task") for r in shown] == [fine]

        package.open_period(company_code(OFFICE, "period"), "2024-05")
        assert _status(browser, base, period) == "failed"
        browser.find_element(By.ID, "restart").click()
        assert _landed(browser, "notice") == "restart: applied"
        wait_for(lambda: _status(browser, base, period) == "done", 60, "restarted task done")

        assert _status(browser, base, activation) == "failed"
        browser.find_element(By.ID, "cancel").click()
        assert _landed(browser, "notice") == "cancel: applied"
        wait_for(lambda: _status(browser, base, activation) == "cancelled", 30, "cancelled")

        assert _status(browser, base, broken) == "failed"
        browser.find_element(By.ID, "restart").click()
        assert "only support" in _landed(browser, "problem")
        assert _status(browser, base, broken) == "failed"
    finally:
        stop()
