"""Debian's real Prometheus scrapes a running dispatcher, connector and API.

The processes run as a user starts them (CLI, own ports); Prometheus runs on a free port
with a data folder of its own and this repository's alert rules. The workload is the
demo's (every task kind, one failure per failure class), so the counters it shows are
the demo's too; the graph of it is left as a screenshot in test-artifacts/prometheus/
(the README's docs/screenshots/prometheus-graph.png is that file).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from dispatcher.client import Client
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.faultplan import inject
from dossierflow.tools.workload import demo_tasks
from store import Store
from tests.e2e.helpers import client_for, package_with
from tests.integration.test_api_flow import free_port
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OFFICE = "office1"
DOSSIERS = [f"d{i:04d}" for i in range(30)]
TASKS = 300
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ARTIFACTS = Path("test-artifacts") / "prometheus"
MOVING = {TaskStatus.SUBMITTED, TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.RETRY_WAIT}
GRAPH = 'sum by (kind, status) (dossierflow_tasks_finished_total{status=~"done|failed"})'


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `make services` installs Debian's prometheus package")
    return found


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


class Prometheus:
    """A Prometheus server of this test: its own port, data folder and configuration."""

    def __init__(self, targets: dict[str, int], folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = [
            {
                "job_name": job,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }
            for job, port in targets.items()
        ]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": jobs,
        }
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self._log = (folder / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
        )

    def ready(self) -> bool:
        """Whether the server answers (its process still running)."""
        assert self.proc.poll() is None, "prometheus exited; see its log in the test's folder"
        try:
            return _text(f"{self.url}/-/ready").strip().endswith("Ready.")
        except OSError:
            return False

    def targets(self) -> dict[str, str]:
        """Health of each active target by job."""
        found = _get(f"{self.url}/api/v1/targets?state=active")["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in found}

    def query(self, query: str) -> list[Any]:
        """The result of an instant query."""
        q = urllib.parse.urlencode({"query": query})
        answer = _get(f"{self.url}/api/v1/query?{q}")
        assert answer["status"] == "success", answer
        result: list[Any] = answer["data"]["result"]
        return result

    def value(self, query: str) -> float | None:
        """The single value of an instant query, None when it has no result."""
        result = self.query(query)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        """Stop the server."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def prometheus_folder() -> Iterator[Path]:
    """Configuration and data of this test's Prometheus, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="prometheus-") as folder:
        yield Path(folder)


def _settled(store: Store) -> dict[str, int]:
    counts = store.tasks.count()
    return {} if any(counts.get(s.value) for s in MOVING) else counts


def _screenshot(url: str, path: Path) -> None:
    """Prometheus's graph page in Debian's headless Chromium, saved as a PNG."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--window-size=1280,1150"):  # fmt: skip
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.set_page_load_timeout(30)
            driver.get(url)
            # Debian's build serves the classic page (Rickshaw); upstream's the React one.
            legend = ".legend li, .graph-legend .legend-item"
            wait_for(
                lambda: driver.find_elements(By.CSS_SELECTOR, legend), 30, "the graph's legend"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
        finally:
            driver.quit()


def test_prometheus_scrapes_every_process_and_counts_the_tasks_just_run(
    settings: Settings,
    store: Store,
    make_cluster: Callable[..., Cluster],
    prometheus_folder: Path,
) -> None:
    check = subprocess.run(
        [_binary("promtool"), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    package = package_with(settings.simpackage_path, OFFICE, DOSSIERS)
    cluster = make_cluster(
        retry_delays_s="1,1", metrics_store_interval_s=1.0, simpackage_latency_ms="5,25"
    )
    ports = {"dispatcher": free_port(), "worker": free_port(), "api": free_port()}
    cluster.start("dispatcher", "dispatcher", "--metrics-port", str(ports["dispatcher"]))
    cluster.start(
        "worker", "worker", "--office", OFFICE, "--concurrency", "3",
        "--metrics-port", str(ports["worker"]),
    )  # fmt: skip
    cluster.start("api", "api", "--port", str(ports["api"]))
    prometheus = Prometheus({f"dossierflow-{k}": v for k, v in ports.items()}, prometheus_folder)
    try:
        wait_for(prometheus.ready, 60, "prometheus to be ready")
        # Every target up, through Prometheus's own view of them.
        wait_for(
            lambda: set(prometheus.targets().values()) == {"up"} and len(prometheus.targets()) == 3,
            60,
            "the dispatcher, the worker and the API to be scraped",
        )

        plan = demo_tasks([OFFICE], len(DOSSIERS), TASKS)
        faults = inject(plan, package)
        client: Client = client_for(cluster, store)
        ids = [client.submit(p.office, p.dossier, p.kind, p.payload) for p in plan]
        client.close()
        counts = wait_for(lambda: _settled(store), 120, "every task to finish or block")
        done, failed = counts.get("done", 0), counts.get("failed", 0)
        assert failed == len(faults) and done > 0

        # The tasks just run, as Prometheus has them from the dispatcher.
        finished = 'sum(dossierflow_tasks_finished_total{job="dossierflow-dispatcher",status="%s"})'
        wait_for(lambda: prometheus.value(finished % "done") == done, 30, f"{done} done")
        wait_for(lambda: prometheus.value(finished % "failed") == failed, 30, f"{failed} failed")
        submitted = prometheus.value("sum(dossierflow_tasks_submitted_total)")
        assert submitted == len(set(ids))
        assert prometheus.value("sum(dossierflow_task_failures_total)") == failed
        # The connector timed every attempt, and each first start from its submission.
        wait_for(
            lambda: (
                (prometheus.value("sum(dossierflow_task_run_seconds_count)") or 0) >= done + failed
            ),
            30,
            "the connector's run times",
        )
        starts = prometheus.value("sum(dossierflow_task_start_delay_seconds_count)")
        assert starts is not None and starts >= done
        # Blocked dossiers: the dispatcher's memory and the API's store reading agree.
        blocked = len(store.dossiers.blocked())
        assert blocked == failed
        wait_for(
            lambda: prometheus.value("dossierflow_blocked_dossiers") == blocked,
            30,
            "the dispatcher's blocked dossiers",
        )
        wait_for(
            lambda: prometheus.value("dossierflow_dossiers_blocked") == blocked,
            30,
            "the API's blocked dossiers",
        )
        waiting = sum(1 for t in store.tasks.find() if t.status is TaskStatus.WAITING)
        wait_for(
            lambda: prometheus.value("dossierflow_waiting_tasks") == waiting,
            30,
            f"{waiting} waiting tasks behind the blocked ones",
        )
        wait_for(
            lambda: (
                prometheus.value("count(dossierflow_partition_consumers == 1)")
                == settings.partitions
            ),
            30,
            "one consumer on every partition, read by the sweeper",
        )
        # The rules loaded into the running server too.
        rules = _get(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {
            "DossierBlockedByRedInstruction",
            "PartitionWithoutConsumer",
            "MailOutboxNotDraining",
        }
        # Every panel of the Grafana dashboard is a query the server accepts and answers.
        panels = json.loads(DASHBOARD.read_text())["panels"]
        for target in (t for p in panels for t in p["targets"]):
            expr = target["expr"].replace("$__rate_interval", "1m")
            assert prometheus.query(expr), f"the dashboard's {expr} has no data"
        graph = urllib.parse.urlencode(
            {"g0.expr": GRAPH, "g0.tab": "0", "g0.range_input": "1m", "g0.stacked": "0"}
        )
        _screenshot(f"{prometheus.url}/graph?{graph}", ARTIFACTS / "prometheus-graph.png")
    finally:
        prometheus.stop()
