"""Start and stop dossierflow processes as a user would (demo, benchmark, chaos and e2e tests).

Like systemd or Kubernetes, the cluster can supervise its processes: one that exits (a
dispatcher that lost its broker, a connector killed by a fault) is started again with
backoff, until `stop`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from broker.admin import Admin, with_vhost
from dossierflow.settings import PREFIX, Settings


@dataclass
class Cluster:
    """Processes sharing one virtual host and database, each logging to its own file."""

    settings: Settings
    vhost: str
    database: str
    log_dir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Times each process was started again by the supervisor, and the exit codes it saw.
    restarts: Counter[str] = field(default_factory=Counter)
    exits: dict[str, list[int]] = field(default_factory=dict)
    _specs: dict[str, tuple[tuple[str, ...], dict[str, str]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _supervisor: threading.Thread | None = field(default=None, init=False, repr=False)

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

    def start(
        self, name: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `dossierflow <args>` as process `name` (`env` adds to the cluster's)."""
        with self._lock:
            self._specs[name] = (args, dict(env or {}))
            return self._spawn(name)

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        args, extra = self._specs[name]
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dossierflow", *args],
            env={**self.env(), **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def supervise(self, backoff_s: float = 0.5, max_backoff_s: float = 8.0) -> None:
        """Restart any process that exits, as systemd or Kubernetes would, until `stop`."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._watch, args=(backoff_s, max_backoff_s), name="supervisor", daemon=True
            )
            self._supervisor.start()

    def _watch(self, backoff_s: float, max_backoff_s: float) -> None:
        # A process that exits soon after its start waits twice as long as the time before
        # (a crash loop backs off); one that ran for a while starts again after `backoff_s`.
        last_wait: dict[str, float] = {}
        due: dict[str, float] = {}
        started = {name: time.monotonic() for name in self.procs}
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            with self._lock:
                if self._stopping.is_set():
                    return
                for name, proc in list(self.procs.items()):
                    if name not in due:
                        code = proc.poll()
                        if code is None:
                            continue
                        self.exits.setdefault(name, []).append(code)
                        quick = now - started.get(name, now) < 30 and name in last_wait
                        wait = min(last_wait[name] * 2, max_backoff_s) if quick else backoff_s
                        last_wait[name] = wait
                        due[name] = now + wait
                    if now >= due[name]:
                        del due[name]
                        self._spawn(name)
                        self.restarts[name] += 1
                        started[name] = now

    def pid(self, name: str) -> int:
        """The process id of the current incarnation of `name`."""
        with self._lock:
            return self.procs[name].pid

    def peak_memory_mb(self) -> dict[str, float]:
        """Each running process's peak resident memory (Linux `VmHWM`), in MB."""
        peaks: dict[str, float] = {}
        with self._lock:
            running = {n: p.pid for n, p in self.procs.items() if p.poll() is None}
        for name, pid in running.items():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = int(line.split()[1]) / 1024
        return peaks

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
        with self._lock:
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM every process, SIGKILL what is left after `timeout`; exit codes."""
        self._stopping.set()  # before any signal: nothing stopped here is started again
        if self._supervisor is not None:
            self._supervisor.join()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
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
