"""The monitoring page in headless Chromium, in Dutch and in French, as an accountant uses it.

Follow a stripe, correct a wrong dossier code through its field (by keyboard) and watch
the activation run without reloading, cancel a wrong activation with the cross, see that
a red failure offers no buttons; axe-core finds no serious or critical violation.
Screenshots go to test-artifacts/monitoring-<language>/.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from axe_selenium_python import Axe
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from dispatcher.api.corrections import INVALID
from dispatcher.api.demo import serve_for_demo
from dispatcher.api.i18n import Speaker
from dispatcher.api.pagebase import NOTICES
from dispatcher.cluster import Cluster
from dispatcher.settings import Settings
from dispatcher.workload import booking, company_code
from store import OfficeRecord, Store, TaskStatus
from tests.e2e.helpers import client_for, package_with
from tests.integration.test_api_flow import free_port
from tests.waiting import wait_for
from workers.accounting.simulated import SimulatedPackage

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OFFICE = "office1"
ARTIFACTS = Path("test-artifacts")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)


def chromium(language: str, profile: Path) -> webdriver.Chrome:
    """Debian's headless Chromium asking for `language` first (its Accept-Language)."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--lang={language}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": f"{language},en;q=0.5"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    return driver


@pytest.fixture
def make_browser() -> Iterator[Callable[[str], webdriver.Chrome]]:
    """Browsers with fresh profiles, quit afterwards."""
    started: list[webdriver.Chrome] = []
    with tempfile.TemporaryDirectory(prefix="chromium-") as profiles:

        def make(language: str) -> webdriver.Chrome:
            driver = chromium(language, Path(profiles) / f"{language}-{len(started)}")
            started.append(driver)
            return driver

        yield make
        for driver in started:
            driver.quit()


def accessibility_problems(driver: webdriver.Chrome) -> list[str]:
    """Serious and critical axe-core violations of the page shown now."""
    axe = Axe(driver)
    axe.inject()
    results: dict[str, Any] = axe.run()
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
        for v in results["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def _failures(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> tuple[Cluster, dict[str, str]]:
    """A running cluster with a wrong code, a wrong activation, a red failure and a done task."""
    package: SimulatedPackage = package_with(
        settings.simpackage_path, OFFICE, ["code", "wrong", "broken", "fine"]
    )
    package.break_database(company_code(OFFICE, "broken"))
    store.save_office(OfficeRecord(OFFICE, "Kantoor Brugge", "Europe/Brussels", "nl"))
    cluster = make_cluster()
    cluster.start_dispatcher()
    cluster.start_worker(OFFICE, "worker-0")
    client = client_for(cluster, store)
    fine_payload = booking(company_code(OFFICE, "fine"), "p1", random.Random(1))
    broken_payload = booking(company_code(OFFICE, "broken"), "p2", random.Random(2))
    tasks = {
        "code": client.submit(OFFICE, "code", "dossier.activate", {"dossier_code": "TYPO"}),
        "wrong": client.submit(OFFICE, "wrong", "dossier.activate", {"dossier_code": "NOPE"}),
        "broken": client.submit(OFFICE, "broken", "booking_proposal.process", broken_payload),
        "fine": client.submit(OFFICE, "fine", "booking_proposal.process", fine_payload),
    }
    client.close()
    for name in ("code", "wrong", "broken"):
        task_id = tasks[name]
        wait_for(lambda t=task_id: _status(store, t) is TaskStatus.FAILED, 90, f"{name} failed")  # type: ignore[misc]
        # The instruction is written just after the failure: the stripes need it.
        wait_for(lambda t=task_id: store.find_instructions(task_id=t), 30, f"{name} instructed")  # type: ignore[misc]
    wait_for(lambda: _status(store, tasks["fine"]) is TaskStatus.DONE, 60, "fine done")
    return cluster, tasks


def _status(store: Store, task_id: str) -> TaskStatus | None:
    task = store.task(task_id)
    return task.status if task else None


def _one(driver: webdriver.Chrome, css: str, what: str, timeout: float = 30) -> WebElement:
    try:
        found = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, css), timeout, what)
    except AssertionError:
        driver.save_screenshot(str(ARTIFACTS / "monitoring-failure.png"))
        raise AssertionError(
            f"{what} not on {driver.current_url}: {driver.page_source[:3000]}"
        ) from None
    return found[0]


def _row_status(driver: webdriver.Chrome, task_id: str) -> str:
    rows = driver.find_elements(By.CSS_SELECTOR, f"tr[data-task='{task_id}']")
    return str(rows[0].get_attribute("data-status")) if rows else ""


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_an_accountant_fixes_and_cancels_activations_in_their_language(
    language: str,
    settings: Settings,
    store: Store,
    make_cluster: Callable[..., Cluster],
    make_browser: Callable[[str], webdriver.Chrome],
) -> None:
    cluster, tasks = _failures(settings, store, make_cluster)
    speaker = Speaker.of(language, "Europe/Brussels")
    shots = ARTIFACTS / f"monitoring-{language}"
    shots.mkdir(parents=True, exist_ok=True)
    base, token, stop = serve_for_demo(
        replace(settings, amqp_url=cluster.amqp_url), settings.mongo_db, free_port()
    )
    browser = make_browser(language)
    try:
        browser.get(base)
        assert "/login" in browser.current_url
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "login").click()

        # The overview: stripes in the person's language, red means support acts.
        _one(browser, "#overview tr[data-dossier]", "the overview")
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == language
        stripes = {
            r.get_attribute("data-dossier"): r.get_attribute("class")
            for r in browser.find_elements(By.CSS_SELECTOR, "#overview tr[data-dossier]")
        }
        assert stripes == {
            "broken": "stripe-red",
            "code": "stripe-orange",
            "fine": "stripe-",
            "wrong": "stripe-orange",
        }
        red = browser.find_element(By.CSS_SELECTOR, f"#tasks tr[data-task='{tasks['broken']}']")
        assert red.find_elements(By.CSS_SELECTOR, "button[data-action]") == []
        assert speaker.gettext("Support acts") in red.text
        listed = {
            r.get_attribute("data-task")
            for r in browser.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task]")
        }
        assert listed == {tasks["code"], tasks["wrong"], tasks["broken"]}  # the default filter
        browser.save_screenshot(str(shots / "overview.png"))
        assert accessibility_problems(browser) == []

        # Follow the stripe: the monitoring list of that dossier and colour, filters in the URL.
        browser.find_element(By.CSS_SELECTOR, "tr[data-dossier='code'] a.stripe-link").click()
        wait_for(lambda: "severity=orange" in browser.current_url, 20, "the stripe's list")
        assert "dossier=code" in browser.current_url
        row = _one(browser, f"#tasks tr[data-task='{tasks['code']}']", "the activation")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task]")) == 1
        wording = speaker.instruction("unknown_dossier_code", {"dossier_code": "TYPO"})
        assert wording.title in row.text and wording.action in row.text
        assert speaker.kind("dossier.activate") in row.text
        browser.save_screenshot(str(shots / "stripe-list.png"))

        # Correct the dossier code by keyboard: a wrong value first, then the right one.
        field_id = f"fix-{tasks['code']}-dossier_code"
        field = browser.find_element(By.ID, field_id)
        label = browser.find_element(By.CSS_SELECTOR, f"label[for='{field_id}']")
        assert label.text == speaker.gettext("Dossier code")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("not a code!", Keys.ENTER)
        error = _one(browser, f"#{field_id}-error", "the field's error")
        assert error.text == speaker.gettext(INVALID)
        assert browser.find_element(By.ID, field_id).get_attribute("aria-invalid") == "true"
        assert _status(store, tasks["code"]) is TaskStatus.FAILED  # nothing was sent
        assert accessibility_problems(browser) == []
        field = browser.find_element(By.ID, field_id)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(company_code(OFFICE, "code"), Keys.ENTER)
        notice = _one(browser, "#notice", "the restart's notice")
        assert notice.text.startswith(speaker.gettext("Restarted: the task runs again."))

        # Back on the task's page (where the refused value was shown): watch it run to done
        # without reloading the page.
        assert browser.current_url.split("?")[0].endswith(f"/tasks/{tasks['code']}")
        browser.execute_script("window.notReloaded = true;")
        wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, "#status [data-status='done']"),
            60,
            "the corrected activation done on the page",
        )
        assert browser.execute_script("return window.notReloaded === true;")
        assert speaker.status("done") in browser.find_element(By.ID, "status").text
        browser.save_screenshot(str(shots / "activation-corrected.png"))
        assert accessibility_problems(browser) == []

        # Cancel the wrong activation with the cross, from the overview's list.
        browser.find_element(By.CSS_SELECTOR, "nav a[href='/']").click()
        wrong = _one(browser, f"#tasks tr[data-task='{tasks['wrong']}']", "the wrong activation")
        wrong.find_element(By.CSS_SELECTOR, "button[data-action='cancel']").click()
        notice = _one(browser, "#notice", "the cancel's notice")
        assert notice.text.startswith(speaker.gettext(NOTICES["cancel-applied"]))
        wait_for(lambda: _status(store, tasks["wrong"]) is TaskStatus.CANCELLED, 30, "cancelled")
        wait_for(lambda: _row_status(browser, tasks["wrong"]) == "", 20, "the row gone by itself")
        browser.save_screenshot(str(shots / "after-cancel.png"))
        # The task itself was never touched by the page: its payload is the corrected one.
        corrected = store.task(tasks["code"])
        assert corrected is not None
        assert corrected.payload == {"dossier_code": company_code(OFFICE, "code")}
    finally:
        stop()
