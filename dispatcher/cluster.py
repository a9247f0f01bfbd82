"""Start and stop dossierflow processes as a user would (demo, benchmark and e2e tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from broker.admin import Admin, with_vhost
from dispatcher.settings import PREFIX, Settings


@dataclass
class Cluster:
    """Processes sharing one virtual host and database, each logging to its own file."""

    settings: Settings
    vhost: str
    database: str
    log_dir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def amqp_url(self) -> str:
        """The AMQP URL of this cluster's virtual host."""
        return with_vhost(self.settings.amqp_url, self.vhost)

    def env(self) -> dict[str, str]:
        """Environment of every process of the cluster."""
        env = dict(os.environ)
        for f in fields(self.settings):
            env[PREFIX + f.name.upper()] = str(getattr(self.settings, f.name))
        env.update(
            {
                "DOSSIERFLOW_AMQP_URL": self.amqp_url,
                "DOSSIERFLOW_MONGO_DB": self.database,
                "DOSSIERFLOW_LOG_FORMAT": "json",
            }
        )
        env.update(self.extra_env)
        return env

    def reset(self) -> None:
        """Give the cluster an empty virtual host (RabbitMQ) and log folder."""
        admin = Admin(self.settings.rabbitmq_api)
        admin.delete_vhost(self.vhost)
        admin.create_vhost(self.vhost)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for old in self.log_dir.glob("*.log"):
            old.unlink()  # logs of a previous run would read as this run's

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `dossierflow <args>` as process `name`."""
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_dispatcher(self, name: str = "dispatcher") -> subprocess.Popen[bytes]:
        """Start a dispatcher (the first one is active, later ones stand by)."""
        return self.start(name, "dispatcher")

    def start_worker(
        self, office: str, name: str, adapter: str = "simulated", concurrency: int = 1
    ) -> subprocess.Popen[bytes]:
        """Start a connector of `office`."""
        return self.start(
            name,
            "worker",
            "--office",
            office,
            "--adapter",
            adapter,
            "--concurrency",
            str(concurrency),
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one process and wait for it when it is a kill."""
        proc = self.procs[name]
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM every process, SIGKILL what is left after `timeout`; exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes
