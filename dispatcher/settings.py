"""The dispatcher's settings section: broker, store, sequencer, sweeper, API and access.

Built by the composition root (`dossierflow.settings` reads the `DOSSIERFLOW_*`
environment variables once); nothing in this package reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.addresses import split_urls
from broker.topology import Topology
from dispatcher.safety import LOOPBACK, host, refusal

PREFIX = "DOSSIERFLOW_"
# Room for the fields around a payload in a message (and around a body in a request).
ENVELOPE_BYTES = 16 * 1024
_SWITCH: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


class SettingsError(ValueError):
    """A setting holds a value of the wrong form, or one no deployment can run with."""


@dataclass(frozen=True)
class Settings:
    """The dispatcher's settings with their defaults; the defaults reach the local services."""

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # The management API: the sweeper reads the work queues' unacknowledged counts there.
    rabbitmq_api: str = "http://guest:guest@127.0.0.1:15672/api"
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "dossierflow"
    # Control partitions: the unit of parallelism of the sequencer. Changing it moves
    # dossiers between partitions: drain the control queues first.
    partitions: int = 8
    delivery_limit: int = 5
    # Replicas of every quorum queue; 0 leaves it to RabbitMQ (all nodes up to 3). Set it
    # on a new cluster (3 on three nodes); non-zero also makes the retry queues quorum
    # queues. Like any queue argument it cannot change on queues that exist (RabbitMQ
    # refuses the redeclare): on a running system add replicas with rabbitmq-queues.
    quorum_replicas: int = 0
    heartbeat_s: int = 30
    # Per-office broker logins (deploy/rabbitmq/office-user.sh): office O's connectors log
    # in as `<prefix>O`, e.g. "connector-". Set, the dispatcher believes an event only
    # from the connector login of the office it names, and a command, timer or dead letter
    # only from its own login or one of `command_publishers` (the API's, comma separated).
    # "" (the local mode, one login for everything): the broker's permissions alone decide.
    connector_user_prefix: str = ""
    command_publishers: str = ""
    # Unacknowledged control messages per partition consumer: what a batch can draw on.
    sequencer_prefetch: int = 512
    # Bytes of unacknowledged control messages one dispatcher may hold, all partitions
    # together. RabbitMQ ignores a prefetch in bytes, so the prefetch per partition is
    # lowered to what this allows at the largest message (`partition_prefetch`).
    sequencer_prefetch_bytes: int = 128 * 1024 * 1024
    # Bytes of ready messages per control partition before the broker refuses publishes
    # (x-max-length-bytes, reject-publish). A queue argument: see `quorum_replicas`.
    partition_max_bytes: int = 64 * 1024 * 1024
    # Threads of a dispatcher, each consuming a share of the partitions on its own connection.
    sequencer_threads: int = 2
    # A partition owner handles what arrives within `batch_linger_ms`, at most `batch_max`
    # messages, as one batch: a constant number of store commands and one confirm wait.
    batch_max: int = 256
    batch_linger_ms: float = 5.0
    # A submitted task not accepted by the sequencer after this long is published again;
    # a released task whose office's work queue stayed empty this long (in looks taken
    # after its release) is reported lost to its owner, which releases it again.
    sweep_grace_s: float = 30.0
    sweep_interval_s: float = 10.0
    # Retention: finished tasks (with their history), resolved instructions and sent mails
    # older than this many days are deleted by the sweeper; 0 keeps everything.
    retention_days: int = 90
    retention_interval_s: float = 3600.0  # how often the sweeper prunes once caught up
    retention_batch: int = 500  # ids per delete command (1 to 1000)
    retention_pause_ms: float = 200.0  # between two delete commands
    # Waits before each delayed retry of a task whose package stays unreachable; after the
    # last one the task fails with PACKAGE_UNREACHABLE. Each value is a retry queue.
    retry_delays_s: str = "10,60,300,1800"
    payload_limit_bytes: int = 256 * 1024
    monitoring_base_url: str = "http://127.0.0.1:8080"
    # Prometheus: the dispatcher and a connector serve /metrics on this port (0: off; a
    # command's --metrics-port wins); the API serves it on its own app unless api_metrics
    # is off. Per-office labels multiply the series: off unless asked, capped when on.
    metrics_port: int = 0
    metrics_addr: str = "127.0.0.1"
    api_metrics: bool = True
    metrics_office_labels: bool = False
    metrics_office_limit: int = 50
    # The API's gauges read from the store (outbox, open instructions) at most this often.
    metrics_store_interval_s: float = 30.0
    # The local mode: services on this machine, demo and tests. "auto": on when every
    # service URL (AMQP, management API, MongoDB) names a loopback host. Outside it the
    # page's cookie is Secure (`__Host-` prefix, HSTS), a CSRF secret is required, and
    # unsafe service settings are refused (dispatcher/safety.py).
    local_mode: str = "auto"  # auto | on | off
    # Outside the local mode: accept amqp://, http:// and mongodb:// without TLS (a network
    # you trust, e.g. inside a cluster).
    allow_plaintext: bool = False
    # The page's cookie: "auto" is Secure outside the local mode; on | off force it.
    cookie_secure: str = "auto"
    # Key of the page's CSRF tokens, the same on every API replica (at least 32 characters);
    # "" in the local mode: a random key per process.
    csrf_secret: str = ""
    # Page sessions end after this long without a request, and this long after login.
    session_idle_s: float = 1800.0
    session_max_s: float = 43200.0
    # How long a token of `dossierflow users token` works unless --days says otherwise.
    token_days: float = 90.0
    # Failed logins (page and bearer tokens) allowed per client address and per token
    # prefix within the window, per API process; more get a 429 with Retry-After.
    login_failures: int = 10
    login_window_s: float = 300.0
    # Submissions through the API, per office and per API process: `submit_rate` tasks a
    # second on average, `submit_burst` at once (a full batch of 1,000 fits); more get a
    # 429 with Retry-After. Keeps one office's burst out of the other offices' way in the
    # control partitions. The Python client (demo, bench, ops tools) is not limited.
    submit_rate: float = 100.0
    submit_burst: int = 1000
    # Tasks an office may have submitted and not finished (failed ones included); a
    # submission over it gets a 429 until tasks finish (API only, counted in store.load).
    office_waiting_cap: int = 10000

    def validate(self) -> None:
        """Refuse settings no deployment can run with."""
        if self.partitions < 1 or self.partitions > 99:
            raise SettingsError("DOSSIERFLOW_PARTITIONS must be between 1 and 99")
        if self.delivery_limit < 1:
            raise SettingsError("DOSSIERFLOW_DELIVERY_LIMIT must be at least 1")
        if self.batch_max < 1 or self.batch_linger_ms < 0:
            raise SettingsError(
                "DOSSIERFLOW_BATCH_MAX must be at least 1 and "
                "DOSSIERFLOW_BATCH_LINGER_MS not negative"
            )
        if not 0 <= self.quorum_replicas <= 9:
            raise SettingsError("DOSSIERFLOW_QUORUM_REPLICAS must be between 0 and 9")
        if self.heartbeat_s < 1:
            raise SettingsError("DOSSIERFLOW_HEARTBEAT_S must be at least 1")
        if not 0 <= self.metrics_port <= 65535 or self.metrics_office_limit < 1:
            raise SettingsError(
                "DOSSIERFLOW_METRICS_PORT must be a port (0: off) and "
                "DOSSIERFLOW_METRICS_OFFICE_LIMIT at least 1"
            )
        if self.retention_days < 0 or not 1 <= self.retention_batch <= 1000:
            raise SettingsError(
                "DOSSIERFLOW_RETENTION_DAYS must be 0 (off) or more and "
                "DOSSIERFLOW_RETENTION_BATCH between 1 and 1000"
            )
        _ = self.retry_delays
        self._validate_bounds()
        self._validate_access()

    def _validate_bounds(self) -> None:
        if self.payload_limit_bytes < 1 or self.sequencer_prefetch < 1:
            raise SettingsError(
                "DOSSIERFLOW_PAYLOAD_LIMIT_BYTES and DOSSIERFLOW_SEQUENCER_PREFETCH "
                "must be positive"
            )
        if self.sequencer_prefetch_bytes < self.partitions * self.message_limit_bytes:
            raise SettingsError(
                "DOSSIERFLOW_SEQUENCER_PREFETCH_BYTES must hold one largest message per partition"
                f" (at least {self.partitions * self.message_limit_bytes})"
            )
        if self.partition_max_bytes < self.message_limit_bytes:
            raise SettingsError(
                "DOSSIERFLOW_PARTITION_MAX_BYTES must hold at least one largest message"
                f" ({self.message_limit_bytes})"
            )

    def _validate_access(self) -> None:
        for name in ("local_mode", "cookie_secure"):
            if getattr(self, name) not in _SWITCH:
                raise SettingsError(f"{PREFIX}{name.upper()} must be auto, on or off")
        if min(self.session_idle_s, self.session_max_s, self.token_days) <= 0:
            raise SettingsError(
                "DOSSIERFLOW_SESSION_IDLE_S, DOSSIERFLOW_SESSION_MAX_S and "
                "DOSSIERFLOW_TOKEN_DAYS must be positive"
            )
        if self.login_failures < 1 or self.login_window_s <= 0:
            raise SettingsError(
                "DOSSIERFLOW_LOGIN_FAILURES must be at least 1 and "
                "DOSSIERFLOW_LOGIN_WINDOW_S positive"
            )
        if self.submit_rate <= 0 or self.submit_burst < 1 or self.office_waiting_cap < 1:
            raise SettingsError(
                "DOSSIERFLOW_SUBMIT_RATE must be positive, and DOSSIERFLOW_SUBMIT_BURST and "
                "DOSSIERFLOW_OFFICE_WAITING_CAP at least 1"
            )
        if self.csrf_secret and len(self.csrf_secret) < 32:
            raise SettingsError("DOSSIERFLOW_CSRF_SECRET must hold at least 32 characters")
        why = None if self.local else refusal(self)
        if why is not None:
            raise SettingsError(f"outside the local mode (DOSSIERFLOW_LOCAL_MODE): {why}")

    @property
    def local(self) -> bool:
        """Whether this is the local mode (see `local_mode`)."""
        if self.local_mode != "auto":
            return _SWITCH[self.local_mode] is True
        urls = (*split_urls(self.amqp_url), self.rabbitmq_api, self.mongo_url)
        return all(host(url) in LOOPBACK for url in urls)

    @property
    def secure_cookie(self) -> bool:
        """Whether the page's cookie is Secure (and HSTS is sent)."""
        if self.cookie_secure != "auto":
            return _SWITCH[self.cookie_secure] is True
        return not self.local

    def topology(self) -> Topology:
        """The broker topology these settings describe."""
        return Topology(
            self.partitions,
            self.delivery_limit,
            self.retry_delays,
            self.quorum_replicas,
            self.partition_max_bytes,
        )

    @property
    def message_limit_bytes(self) -> int:
        """The largest message: a payload at its limit in its envelope (the broker's
        `max_message_size` in deploy/ is this)."""
        return self.payload_limit_bytes + ENVELOPE_BYTES

    @property
    def partition_prefetch(self) -> int:
        """Unacknowledged messages per partition consumer: `sequencer_prefetch`, lowered so
        that every partition full of largest messages stays within the byte budget."""
        fits = self.sequencer_prefetch_bytes // (self.partitions * self.message_limit_bytes)
        return max(1, min(self.sequencer_prefetch, fits))

    @property
    def retry_delays(self) -> tuple[int, ...]:
        """Delayed retry waits in seconds, strictly positive."""
        try:
            delays = tuple(int(v) for v in self.retry_delays_s.split(",") if v.strip())
        except ValueError as exc:
            raise SettingsError("DOSSIERFLOW_RETRY_DELAYS_S must be like '10,60,300'") from exc
        if any(d <= 0 for d in delays):
            raise SettingsError("DOSSIERFLOW_RETRY_DELAYS_S must hold positive seconds")
        return delays
