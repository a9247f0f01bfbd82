"""The faults of `dossierflow chaos`: each one injected, held for a while and healed.

Broker and store faults go through `deploy/local/services.sh` with the caller's
`DOSSIERFLOW_*` environment, so they hit the services the run uses (CI's, or a private
pair on other ports) and never an instance the settings do not point at.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker import topology
from broker.addresses import split_urls
from broker.messages import Envelope, MessageType, encode, utcnow
from broker.rabbitmq import Connection
from dossierflow.settings import Settings
from dossierflow.tools.chaoscheck import FaultWindow, Poison
from dossierflow.tools.cluster import Cluster
from workers.accounting.simulated import SimulatedPackage

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "services.sh"
# Faults that stop or cut the shared services: only on services this run controls.
SERVICE_FAULTS = ("rabbitmq-restart", "store-restart", "connections-close")
FAULTS = (
    "connector-kill",
    "dispatcher-kill",
    "dispatcher-pause",
    *SERVICE_FAULTS,
    "package-unreachable",
    "poison",
    "actions",
)
# Faults of the three-node broker (`services.sh cluster`): only when the run uses it.
CLUSTER_FAULTS = ("node-loss",)
# Asked for by name only. A SIGKILL of the mailer after the SMTP server took a mail and
# before the outbox recorded it sends that mail again: delivery to SMTP is at least once
# (reminder/mailer.py), so about every other such run counts one duplicated mail.
OPT_IN_FAULTS = ("mailer-kill",)
DEFAULT_FAULTS = (*FAULTS, *CLUSTER_FAULTS)
KNOWN_FAULTS = (*DEFAULT_FAULTS, *OPT_IN_FAULTS)


@dataclass
class Services:
    """The run's RabbitMQ and FerretDB, driven through services.sh."""

    settings: Settings
    script: Path = SCRIPT

    def _run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            ["bash", str(self.script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"services.sh {' '.join(args)}: {done.stderr.strip()[-400:]}")
        return done.stdout

    def controls_settings(self) -> bool:
        """Whether services.sh (with this environment) runs the broker and store we use."""
        if not self.script.exists():
            return False
        wanted = {
            "AMQP_URL": self.settings.amqp_url,
            "MONGO_URL": self.settings.mongo_url,
        }
        for line in self._run("env").splitlines():
            name, _, value = line.removeprefix("export DOSSIERFLOW_").partition("=")
            if name in wanted and _port(value.strip("'")) != _port(wanted[name]):
                return False
        return True

    def controls_cluster(self) -> bool:
        """Whether the run's broker is the three-node cluster of `services.sh cluster`."""
        if not self.script.exists():
            return False
        for line in self._run("cluster", "env").splitlines():
            name, _, value = line.removeprefix("export DOSSIERFLOW_").partition("=")
            if name == "AMQP_URL":
                ours = {_port(u) for u in split_urls(value.strip("'"))}
                return ours == {_port(u) for u in split_urls(self.settings.amqp_url)}
        return False

    def stop_node(self, number: int) -> None:
        """Stop node `number` of the cluster (as `rabbitmqctl stop` would: a clean shutdown)."""
        self._run("cluster", "stop-node", str(number))

    def start_cluster(self, number: int | None = None) -> None:
        """Start node `number`, or every node of the cluster (idempotent)."""
        args = ("start-node", str(number)) if number else ("start",)
        self._run("cluster", *args, timeout=400)

    def rabbitmqctl(self, *args: str) -> None:
        """Run rabbitmqctl against our node."""
        self._run("rabbitmqctl", *args)

    def stop_store(self) -> None:
        """Stop FerretDB (SIGTERM, as an operator or the kubelet would)."""
        state = Path(
            os.environ.get("DOSSIERFLOW_STATE_DIR", Path.home() / ".local/state/dossierflow")
        )
        pid = int((state / "ferretdb" / "ferretdb.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def start(self) -> None:
        """Start whatever is stopped (idempotent); waits until both answer."""
        self._run("start", timeout=300)


def _management(api_url: str) -> Callable[[str, str], Any]:
    """A caller of the management API: (method, path) -> the decoded answer.

    With several nodes listed, a node that cannot be reached is skipped (a lost node).
    """
    nodes = []
    for url in split_urls(api_url):
        parts = urllib.parse.urlsplit(url)
        base = f"{parts.scheme}://{parts.hostname}:{parts.port}{parts.path.rstrip('/')}"
        user, password = parts.username or "guest", parts.password or "guest"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        nodes.append((base, {"Authorization": f"Basic {token}", "X-Reason": "dossierflow chaos"}))

    def call(method: str, path: str) -> Any:
        for i, (base, headers) in enumerate(nodes):
            request = urllib.request.Request(base + path, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    body = response.read()
            except urllib.error.HTTPError:
                raise
            except OSError:
                if i == len(nodes) - 1:
                    raise
                continue
            return json.loads(body) if body else None
        return None

    return call


def partition_leaders(api_url: str, vhost: str) -> Counter[str]:
    """How many control partitions each cluster node leads (quorum queue `leader`)."""
    queues = _management(api_url)("GET", f"/queues/{urllib.parse.quote(vhost, safe='')}")
    return Counter(
        str(q.get("leader"))
        for q in queues
        if re.fullmatch(r"dossierflow\.control\.p\d+", q["name"]) and q.get("leader")
    )


def close_all_connections(api_url: str) -> int:
    """Make the broker close every client connection; how many it closed."""
    call = _management(api_url)
    names = [c["name"] for c in call("GET", "/connections?columns=name")]
    for name in names:
        with contextlib.suppress(urllib.error.HTTPError):  # already gone
            call("DELETE", "/connections/" + urllib.parse.quote(name, safe=""))
    return len(names)


def active_pid(api_url: str, vhost: str, queue: str) -> int | None:
    """The process id in the client-given connection name of a queue's active consumer."""
    call = _management(api_url)
    q = urllib.parse.quote
    details = call("GET", f"/queues/{q(vhost, safe='')}/{q(queue, safe='')}")
    for consumer in details.get("consumer_details", []):
        if consumer.get("activity_status") not in (None, "up", "single_active"):
            continue
        conn = consumer.get("channel_details", {}).get("connection_name", "")
        props = call("GET", "/connections/" + q(conn, safe="")).get("client_properties", {})
        pid = str(props.get("connection_name", "")).rsplit(":", 1)[-1].split("/", 1)[0]
        if pid.isdigit():
            return int(pid)
    return None


def _port(url: str) -> int | None:
    return urllib.parse.urlsplit(url).port


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Injector:
    """Injects one fault at a time into a running cluster; records each window."""

    cluster: Cluster
    services: Services
    package: SimulatedPackage
    rng: random.Random
    offices: list[str]
    dossiers: list[tuple[str, str]]
    fix: Callable[[random.Random], int]  # one round of fixing blocked dossiers
    windows: list[FaultWindow] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    # SIGKILLs the mailer mid-send; what it did (None: the run has no mailer).
    kill_mailer: Callable[[random.Random, Callable[[], str]], str] | None = None

    def inject(self, name: str) -> FaultWindow:
        """Inject the fault `name`, hold it, heal it; the window it lasted."""
        start = time.time()
        detail = getattr(self, "_" + name.replace("-", "_"))()
        window = FaultWindow(name, start, time.time(), detail)
        self.windows.append(window)
        return window

    def _names(self, prefix: str) -> list[str]:
        return sorted(n for n in self.cluster.procs if n.startswith(prefix))

    def _wait_restarted(self, name: str, pid: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.cluster.pid(name) == pid and time.monotonic() < deadline:
            time.sleep(0.1)

    def _connector_kill(self) -> str:
        office = self.rng.choice(self.offices)
        names = self._names(f"worker-{office}-")
        name = self.rng.choice(names)
        # Mid-task for sure only when every connector of the office is busy: the package's
        # log shows as many calls running there (each connector runs one at a time).
        deadline = time.monotonic() + 5
        busy = 0
        while busy < len(names) and time.monotonic() < deadline:
            recent = time.time() - 2  # a call cut off by an earlier kill stays open forever
            busy = sum(
                1
                for e in self.package.executions()
                if e.office == office and e.ended_at is None and e.started_at > recent
            )
            time.sleep(0.1)
        pid = self.cluster.pid(name)
        self.cluster.kill(name)
        self._wait_restarted(name, pid)
        return f"{name} ({busy} of {len(names)} connectors of {office} busy)"

    def _dispatcher_kill(self) -> str:
        name = self.active_dispatcher()
        pid = self.cluster.pid(name)
        self.cluster.kill(name)
        self._wait_restarted(name, pid)
        return name

    def _mailer_kill(self) -> str:
        if self.kill_mailer is None:
            raise RuntimeError("this run has no mailer")
        return self.kill_mailer(self.rng, self._poison)

    def _dispatcher_pause(self) -> str:
        name = self.active_dispatcher()
        # Longer than the broker's heartbeat timeout (two missed heartbeats): it loses its
        # partitions to the standby, then wakes up as a zombie owner.
        hold = self.cluster.settings.heartbeat_s * 3 + self.rng.uniform(1, 4)
        self.cluster.kill(name, signal.SIGSTOP)
        time.sleep(hold)
        self.cluster.kill(name, signal.SIGCONT)
        return f"{name} for {hold:.0f} s"

    def _rabbitmq_restart(self) -> str:
        hold = self.rng.uniform(4, 9)
        self.services.rabbitmqctl("stop_app")
        time.sleep(hold)
        self.services.rabbitmqctl("start_app")
        return f"down {hold:.0f} s"

    def _node_loss(self) -> str:
        # The node that leads the most partitions: its loss moves the most queue leaders.
        led = partition_leaders(self.cluster.settings.rabbitmq_api, self.cluster.vhost)
        victim, most = led.most_common(1)[0]
        found = re.fullmatch(r"dossierflow-c(\d+)@.*", victim)
        if found is None:
            raise RuntimeError(f"{victim} is not a node of services.sh cluster")
        hold = self.rng.uniform(5, 10)
        self.services.stop_node(int(found[1]))
        time.sleep(hold)
        self.services.start_cluster(int(found[1]))
        return f"{victim} (leader of {most} partitions) down {hold:.0f} s"

    def _store_restart(self) -> str:
        hold = self.rng.uniform(3, 7)
        self.services.stop_store()
        time.sleep(hold)
        self.services.start()
        return f"down {hold:.0f} s"

    def _connections_close(self) -> str:
        # What `rabbitmqctl close_all_connections` does, through the management API: the CLI
        # boots an Erlang VM per call, which takes up to a minute on a loaded machine.
        return f"{close_all_connections(self.cluster.settings.rabbitmq_api)} connections"

    def _package_unreachable(self) -> str:
        hold = self.rng.uniform(2, 8)
        self.package.set_unreachable(hold)
        time.sleep(hold)
        return f"{hold:.0f} s"

    def _poison(self) -> str:
        messages = [self._bad_message() for _ in range(self.rng.randint(2, 4))]
        conn = Connection.open(self.cluster.amqp_url, name="dossierflow-chaos-poison")
        try:
            channel = conn.channel(confirm=True)
            for office, dossier, body in messages:
                message_id = uuid.uuid4().hex
                channel.publish_raw(
                    topology.WORK_EXCHANGE, f"{office}.{dossier}", body, message_id=message_id
                )
                self.poison.append(Poison(message_id, office, dossier, time.time(), body))
        finally:
            conn.close()
        return f"{len(messages)} messages"

    def _bad_message(self) -> tuple[str, str, bytes]:
        """A garbled or foreign message on a real dossier's routing key (no task of ours)."""
        office, dossier = self.rng.choice(self.dossiers)
        good = Envelope(
            MessageType.RUN,
            uuid.uuid4().hex,  # a task no store knows: the instruction is tied to no task
            office,
            dossier,
            utcnow(),
            {"kind": "dossier.sync", "payload": {"dossier_code": "x"}},
        )
        body = json.loads(encode(good))
        other = next(o for o in self.offices if o != office)
        variants = [
            b"\x00garbled{",
            b"[1, 2, 3]",
            json.dumps({**body, "v": 2}).encode(),
            json.dumps({**body, "data": {"kind": "coffee.make", "payload": {}}}).encode(),
            json.dumps({**body, "office": other}).encode(),  # another office's message
            json.dumps({**body, "type": "task.done"}).encode(),  # an event, not work
        ]
        return office, dossier, self.rng.choice(variants)

    def _actions(self) -> str:
        return f"{self.fix(self.rng)} action(s)"

    def active_dispatcher(self) -> str:
        """The dispatcher that owns the partitions (the broker's single active consumer)."""
        names = self._names("dispatcher-")
        by_pid = {self.cluster.pid(n): n for n in names}
        first = self.cluster.settings.topology().partition_queues()[0]
        try:
            pid = active_pid(self.cluster.settings.rabbitmq_api, self.cluster.vhost, first)
        except (OSError, ValueError, KeyError):
            pid = None
        return by_pid.get(pid or -1, names[0])
