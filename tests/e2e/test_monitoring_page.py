"""The monitoring page in headless Chromium, in Dutch and in French, as an accountant uses it.

Follow a stripe, correct a wrong dossier code through its field (by keyboard) and watch
the activation run without reloading, cancel a wrong activation with the cross, see that
a red failure offers no buttons; axe-core finds no serious or critical violation.
Screenshots go to test-artifacts/monitoring-<language>/.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib import request
from urllib.error import URLError

import pytest
from axe_selenium_python import Axe
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from dispatcher.api.corrections import INVALID
from dispatcher.api.i18n import Speaker
from dispatcher.api.pagebase import NOTICES
from dossierflow.settings import Settings
from dossierflow.tools.apidemo import serve_for_demo
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import booking, company_code
from store import OfficeRecord, Store
from tests.e2e.helpers import client_for, package_with
from tests.integration.test_api_flow import free_port
from tests.waiting import wait_for
from workers.accounting.simulated import SimulatedPackage
from workers.vocabulary import TaskStatus

T = TypeVar("T")

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


class ChromedriverService(Service):
    """Debian's chromedriver, stopped without leaking a socket.

    Selenium's own shutdown request (4.x `Service.send_remote_shutdown_command`) never closes
    its response, so a garbage collection later warns of an unclosed socket inside whichever
    test runs then (warnings are errors here).
    """

    def send_remote_shutdown_command(self) -> None:
        try:
            with request.urlopen(f"{self.service_url}/shutdown", timeout=10) as response:
                response.read()
        except (URLError, TimeoutError, ConnectionError):
            return
        deadline = time.monotonic() + 30  # then Service.stop terminates the process anyway
        while self.is_connectable() and time.monotonic() < deadline:
            time.sleep(0.2)


def chromium(language: str, profile: Path) -> webdriver.Chrome:
    """Debian's headless Chromium asking for `language` first (its Accept-Language)."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--lang={language}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": f"{language},en;q=0.5"})
    driver = webdriver.Chrome(service=ChromedriverService("/usr/bin/chromedriver"), options=options)
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
    store.offices.save(OfficeRecord(OFFICE, "Kantoor Brugge", "Europe/Brussels", "nl"))
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
        wait_for(lambda t=task_id: store.instructions.find(task_id=t), 30, f"{name} instructed")  # type: ignore[misc]
    wait_for(lambda: _status(store, tasks["fine"]) is TaskStatus.DONE, 60, "fine done")
    return cluster, tasks


def _status(store: Store, task_id: str) -> TaskStatus | None:
    task = store.tasks.get(task_id)
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


def _click(driver: webdriver.Chrome, css: str, what: str) -> None:
    """Click what `css` finds; the page's live refresh may replace it between find and click."""

    def attempt() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    wait_for(attempt, 30, what)


def _row_status(driver: webdriver.Chrome, task_id: str) -> str:
    """The row's status, read in one script so a live refresh cannot swap the row mid-read."""
    script = "const r = document.querySelector(arguments[0]);"
    script += " return r ? (r.getAttribute('data-status') || '') : '';"
    return str(driver.execute_script(script, f"tr[data-task='{task_id}']"))


def _stable(read: Callable[[], T]) -> T:
    """`read` again when the live refresh replaced an element it was reading."""
    for _ in range(20):
        try:
            return read()
        except StaleElementReferenceException:
            continue
    return read()


@dataclass
class Visit:
    """One person's session on the page, in one language."""

    browser: webdriver.Chrome
    store: Store
    tasks: dict[str, str]
    speaker: Speaker
    shots: Path

    def see_the_overview(self) -> None:
        """Stripes in the person's language; red says support acts and offers no button."""
        b, tasks = self.browser, self.tasks
        _one(b, "#overview tr[data-dossier]", "the overview")
        assert b.find_element(By.TAG_NAME, "html").get_attribute("lang") == self.speaker.language

        def read() -> tuple[dict[str | None, str | None], list[WebElement], str, set[str | None]]:
            stripes = {
                r.get_attribute("data-dossier"): r.get_attribute("class")
                for r in b.find_elements(By.CSS_SELECTOR, "#overview tr[data-dossier]")
            }
            red = b.find_element(By.CSS_SELECTOR, f"#tasks tr[data-task='{tasks['broken']}']")
            listed = {
                r.get_attribute("data-task")
                for r in b.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task]")
            }
            return (
                stripes,
                red.find_elements(By.CSS_SELECTOR, "button[data-action]"),
                red.text,
                listed,
            )

        stripes, red_buttons, red_text, listed = _stable(read)
        assert stripes == {
            "broken": "stripe-red",
            "code": "stripe-orange",
            "fine": "stripe-",
            "wrong": "stripe-orange",
        }
        assert red_buttons == []
        assert self.speaker.gettext("Support acts") in red_text
        assert listed == {tasks["code"], tasks["wrong"], tasks["broken"]}  # the default filter
        b.save_screenshot(str(self.shots / "overview.png"))
        assert accessibility_problems(b) == []

    def follow_the_stripe(self) -> None:
        """The stripe leads to the monitoring list of that dossier and colour (in the URL)."""
        b = self.browser
        _click(b, "tr[data-dossier='code'] a.stripe-link", "the stripe")
        wait_for(lambda: "severity=orange" in b.current_url, 20, "the stripe's list")
        assert "dossier=code" in b.current_url
        css = f"#tasks tr[data-task='{self.tasks['code']}']"
        row_text = _stable(lambda: _one(b, css, "the activation").text)
        assert len(b.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task]")) == 1
        wording = self.speaker.instruction("unknown_dossier_code", {"dossier_code": "TYPO"})
        assert wording.title in row_text and wording.action in row_text
        assert self.speaker.kind("dossier.activate") in row_text
        b.save_screenshot(str(self.shots / "stripe-list.png"))

    def correct_the_dossier_code(self) -> None:
        """By keyboard: a wrong value comes back with its error, the right one restarts."""
        b, task_id = self.browser, self.tasks["code"]
        field_id = f"fix-{task_id}-dossier_code"
        label = b.find_element(By.CSS_SELECTOR, f"label[for='{field_id}']")
        assert label.text == self.speaker.gettext("Dossier code")
        field = b.find_element(By.ID, field_id)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("not a code!", Keys.ENTER)
        error = _one(b, f"#{field_id}-error", "the field's error")
        assert error.text == self.speaker.gettext(INVALID)
        assert b.find_element(By.ID, field_id).get_attribute("aria-invalid") == "true"
        assert _status(self.store, task_id) is TaskStatus.FAILED  # nothing was sent
        assert accessibility_problems(b) == []
        field = b.find_element(By.ID, field_id)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(company_code(OFFICE, "code"), Keys.ENTER)
        notice = _stable(lambda: _one(b, "#notice", "the restart's notice").text)
        assert notice.startswith(self.speaker.gettext(NOTICES["restart-applied"]))

    def watch_it_run(self) -> None:
        """Back on the task's page, the status reaches done without a reload."""
        b, task_id = self.browser, self.tasks["code"]
        assert b.current_url.split("?")[0].endswith(f"/tasks/{task_id}")
        b.execute_script("window.notReloaded = true;")
        wait_for(
            lambda: b.find_elements(By.CSS_SELECTOR, "#status [data-status='done']"),
            60,
            "the corrected activation done on the page",
        )
        assert b.execute_script("return window.notReloaded === true;")
        assert self.speaker.status("done") in _stable(lambda: b.find_element(By.ID, "status").text)
        b.save_screenshot(str(self.shots / "activation-corrected.png"))
        assert accessibility_problems(b) == []
        corrected = self.store.tasks.get(task_id)
        assert corrected is not None
        assert corrected.payload == {"dossier_code": company_code(OFFICE, "code")}

    def cancel_with_the_cross(self) -> None:
        """The wrong activation's cross, in the overview's list."""
        b, task_id = self.browser, self.tasks["wrong"]
        b.find_element(By.CSS_SELECTOR, "nav a[href='/']").click()
        _one(b, f"#tasks tr[data-task='{task_id}']", "the wrong activation")
        _click(b, f"#tasks tr[data-task='{task_id}'] button[data-action='cancel']", "the cross")
        notice = _stable(lambda: _one(b, "#notice", "the cancel's notice").text)
        assert notice.startswith(self.speaker.gettext(NOTICES["cancel-applied"]))
        wait_for(lambda: _status(self.store, task_id) is TaskStatus.CANCELLED, 30, "cancelled")
        wait_for(lambda: _row_status(b, task_id) == "", 20, "the row gone from the list")
        b.save_screenshot(str(self.shots / "after-cancel.png"))


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_an_accountant_fixes_and_cancels_activations_in_their_language(
    language: str,
    settings: Settings,
    store: Store,
    make_cluster: Callable[..., Cluster],
    make_browser: Callable[[str], webdriver.Chrome],
) -> None:
    cluster, tasks = _failures(settings, store, make_cluster)
    shots = ARTIFACTS / f"monitoring-{language}"
    shots.mkdir(parents=True, exist_ok=True)
    base, token, stop = serve_for_demo(
        replace(settings, amqp_url=cluster.amqp_url), settings.mongo_db, free_port()
    )
    browser = make_browser(language)
    visit = Visit(browser, store, tasks, Speaker.of(language, "Europe/Brussels"), shots)
    try:
        browser.get(base)
        assert "/login" in browser.current_url
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "login").click()
        visit.see_the_overview()
        visit.follow_the_stripe()
        visit.correct_the_dossier_code()
        visit.watch_it_run()
        visit.cancel_with_the_cross()
    finally:
        stop()
