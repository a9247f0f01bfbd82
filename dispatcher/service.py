"""The `dossierflow dispatcher` process: sequencer consumers plus the outbox sweeper."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import structlog

from broker import topology
from broker.admin import Admin, vhost_of
from broker.errors import AdminError, BrokerError, ChannelRefused
from broker.messages import Envelope, MessageType, format_ts, utcnow
from broker.rabbitmq import Channel, Connection
from dispatcher.lostwork import IdleWatch, QueueFigures, lost_releases
from dispatcher.metrics import SequencerMetrics
from dispatcher.owner import Owner, OwnerConfig
from dispatcher.retention import Pruner
from dispatcher.senders import Senders
from dispatcher.settings import Settings
from store import Fenced, Store, StoreError, StoreUnavailable

log = structlog.get_logger("dossierflow.dispatcher")

SWEEPER_LEASE = "sweeper"
# (back-off key, task id, office, dossier, message type, data): one message to republish.
_Pending = tuple[str, str, str, str, MessageType, dict[str, Any]]


def _until_store_answers(stop: threading.Event, step: Callable[[], None], event: str) -> None:
    """Run `step`, waiting through a database outage (until stop is set)."""
    wait = 0.5
    while True:
        try:
            step()
            return
        except StoreUnavailable as exc:
            if stop.is_set():
                raise
            log.warning(event, error=str(exc))
            stop.wait(wait)
            wait = min(wait * 2, 10.0)


class Dispatcher:
    """Consumes every control partition (standby where another process is active)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        stop: threading.Event,
        metrics: SequencerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self.metrics = metrics or SequencerMetrics()
        self._store = store
        self._stop = stop
        self._topo = settings.topology()
        self._name = f"dispatcher@{socket.gethostname()}:{os.getpid()}"
        # task id -> (times republished, monotonic time before which it is not again)
        self._republished: dict[str, tuple[int, float]] = {}
        self._next_sweep = time.monotonic() + settings.sweep_interval_s
        self._owners: dict[int, Owner] = {}
        self._sequencing = store.sequencing
        self._pruner = Pruner(settings, store, self._name, stop)
        self._publish_ch: Channel | None = None
        # A work queue's ready messages are counted exactly by a passive declare, on a
        # channel of its own (a queue that is gone closes it); its unacknowledged ones
        # come from the management API only.
        self._sweep_conn: Connection | None = None
        self._peek_ch: Channel | None = None
        self._admin = Admin(settings.rabbitmq_api, timeout=3.0)
        self._vhost = vhost_of(settings.amqp_url)
        self._idle = IdleWatch()

    def run(self) -> int:
        """Run until `stop` is set; 0 when stopped.

        Partitions are spread over `sequencer_threads` threads, each with its own
        connection: a partition's messages stay in one thread (one after the other),
        while threads wait on the broker and the database in parallel. A thread whose
        connection or database breaks drops what it held and connects again (as a
        standby if another process took its partitions meanwhile). The main thread runs
        the sweeper.
        """
        _until_store_answers(self._stop, self._store.ensure_indexes, "dispatcher.store_unavailable")
        queues = self._topo.partition_queues()
        count = max(1, min(self._settings.sequencer_threads, len(queues)))
        threads = [
            threading.Thread(
                target=self._partitions, args=(queues[i::count], i), name=f"partitions-{i}"
            )
            for i in range(count)
        ]
        for thread in threads:
            thread.start()
        log.info(
            "dispatcher.started",
            name=self._name,
            partitions=len(queues),
            threads=count,
            prefetch=self._settings.partition_prefetch,
        )
        conn: Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or not conn.is_open:
                    conn = Connection.open(
                        self._settings.amqp_url,
                        name=self._name,
                        heartbeat=self._settings.heartbeat_s,
                    )
                    self._publish_ch = conn.channel(confirm=True)
                    self._publish_ch.declare_control(self._topo)
                    self._sweep_conn, self._peek_ch = conn, None
                conn.sleep(min(1.0, self._settings.sweep_interval_s))
                if not self._stop.is_set():
                    self._sweep_if_due(conn.sleep)
            except BrokerError as exc:
                log.warning("dispatcher.connection_lost", error=str(exc))
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(1.0)
        for thread in threads:
            thread.join()
        if conn is not None:
            conn.close()
        log.info("dispatcher.stopped", name=self._name)
        return 0

    def _sweep_if_due(self, sleep: Callable[[float], None] | None = None) -> None:
        if time.monotonic() < self._next_sweep:
            return
        base = self._settings.sweep_interval_s
        self._next_sweep = time.monotonic() + base
        held = False
        try:
            # One sweeper at a time (a lease in the store): two dispatchers sweeping would
            # each republish the same backlog.
            now = utcnow()
            until = now + timedelta(seconds=3 * base)
            held = self._sequencing.lease(SWEEPER_LEASE, self._name, now, until)
            if held:
                self.sweep()
            else:
                self.metrics.forget_partitions()  # the lease holder's readings are current
        except (StoreError, BrokerError) as exc:
            # The next sweep tries again; a passing outage must not stop the dispatcher.
            log.warning("sweeper.failed", error=str(exc))
        if held:
            # Retention needs the store only: a failed sweep does not hold it up.
            self._pruner.run_if_due(sleep)

    def _partitions(self, queues: list[str], index: int) -> None:
        """Own some partitions until stop, reconnecting after any failure."""
        backoff = 0.5
        config = OwnerConfig(
            name=f"{self._name}/{index}",
            batch_max=self._settings.batch_max,
            linger_s=self._settings.batch_linger_ms / 1000,
            # Bounded in messages and, through the largest message, in bytes.
            prefetch=self._settings.partition_prefetch,
            max_message_bytes=self._settings.message_limit_bytes,
        )
        store_thread = ThreadPoolExecutor(1, f"owner-store-{index}")  # see Owner._pumped
        while not self._stop.is_set():
            conn: Connection | None = None
            try:
                conn = Connection.open(
                    self._settings.amqp_url, name=config.name, heartbeat=self._settings.heartbeat_s
                )
                conn.channel(confirm=False).declare_control(self._topo)
                senders = Senders.of(
                    self._settings.connector_user_prefix,
                    conn.user,
                    self._settings.command_publishers.split(","),
                )
                owner = Owner(
                    self._store,
                    conn,
                    self._topo,
                    queues,
                    config,
                    metrics=self.metrics,
                    senders=senders,
                    store_thread=store_thread,
                )
                self._owners[index] = owner
                owner.serve(self._stop.is_set)
                backoff = 0.5
            except Fenced as exc:
                log.warning("partition.fenced", error=str(exc), owner=config.name)
            except (BrokerError, StoreError) as exc:
                # Unacked messages go back to the partitions (and to a standby): nothing lost.
                log.warning("partitions.reconnecting", error=str(exc), owner=config.name)
            except Exception as exc:
                log.exception("partitions.failed", error=type(exc).__name__, owner=config.name)
            finally:
                self._owners.pop(index, None)
                self.metrics.drop(config.name)
                if conn is not None:
                    conn.close()
            if not self._stop.is_set():
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        store_thread.shutdown(wait=False)

    def sweep(self) -> int:
        """Publish again what the sequencer should have seen by now; return how many.

        A task still `submitted` after the grace period either lost its command (its
        client died between the insert and the confirm) or waits behind a backlog; a task
        in `retry_wait` past its next attempt lost its timer (retry queues dead-letter at
        most once). A republished message is harmless either way (the sequencer ignores
        what it has seen), but republishing the same backlog every sweep would feed it:
        each is republished again only after twice its previous wait (grace, 2x, 4x...).
        A release whose work message is gone is reported to its owner the same way
        (`_lost_releases`).
        """
        cutoff = utcnow() - timedelta(seconds=self._settings.sweep_grace_s)
        channel = self._publish_ch
        if channel is None:
            raise BrokerError("the sweeper has no broker connection yet")
        # While a partition holds a backlog, a task still `submitted` most likely has its
        # command waiting in it: republishing would only feed the backlog. A command that
        # was never published is found once the partitions have drained.
        depths = {q: channel.depth(q) for q in self._topo.partition_queues()}
        self.metrics.partitions(depths)
        backlog = sum(ready for ready, _consumers in depths.values())
        # In submission order (ids sort so within a client): the owner numbers them in the
        # order it receives their commands.
        stale = [] if backlog else self._store.outstanding.stale_submitted(cutoff)
        stale.sort(key=lambda t: (t.submitted_at, t.id))
        pending: list[_Pending] = [
            # `recheck`: the owner looks the task up, it may have been accepted meanwhile.
            (
                f"submitted:{t.id}",
                t.id,
                t.office,
                t.dossier,
                MessageType.SUBMITTED,
                {"kind": t.kind, "payload": t.payload, "recheck": True},
            )
            for t in stale
        ] + [
            (
                f"retry:{t.id}:{t.retries}",
                t.id,
                t.office,
                t.dossier,
                MessageType.RETRY_DUE,
                {"retry": t.retries, "run": t.run},
            )
            for t in self._store.outstanding.stale_retry_wait(cutoff)
        ]
        pending += self._lost_releases(cutoff, backlog > 0)
        now = time.monotonic()
        keys = {key for key, *_ in pending}
        self._republished = {k: v for k, v in self._republished.items() if k in keys}
        due = [p for p in pending if self._republished.get(p[0], (0, 0.0))[1] <= now]
        for key, task_id, office, dossier, kind, data in due:
            if kind is MessageType.RELEASE_LOST:
                log.warning(
                    "sweeper.release_lost", task_id=task_id, key=f"{office}.{dossier}", **data
                )
            times = self._republished.get(key, (0, 0.0))[0] + 1
            self._republished[key] = (times, now + self._settings.sweep_grace_s * 2**times)
            env = Envelope(kind, task_id, office, dossier, at=utcnow(), data=data)
            channel.publish(topology.PARTITIONS_EXCHANGE, env, self._topo.route(env.routing_key))
        if due:
            log.warning("sweeper.republished", count=len(due), stale=len(pending))
        return len(due)

    def _figures(self, office: str) -> QueueFigures | None:
        """An office's work queue: whether it exists, ready and unacknowledged messages.

        None when the broker cannot tell (the office's watch then starts over).
        """
        name = topology.work_queue(office)
        try:
            doc = self._admin.queue_if_any(self._vhost, name)
            conn = self._sweep_conn
            if conn is None:
                raise BrokerError("the sweeper has no broker connection yet")
            if self._peek_ch is None or not self._peek_ch.is_open:
                self._peek_ch = conn.channel(confirm=False)
            ready, _consumers = self._peek_ch.depth(name)
        except ChannelRefused as exc:
            if exc.code == 404:
                return QueueFigures(exists=False)  # deleted: it holds nothing
            log.warning("sweeper.no_queue_figures", office=office, error=str(exc))
            return None
        except (AdminError, BrokerError) as exc:
            log.warning("sweeper.no_queue_figures", office=office, error=str(exc))
            return None
        unacked = QueueFigures.of(doc).unacked if doc is not None else None
        return QueueFigures(True, ready, unacked)

    def _lost_releases(self, cutoff: datetime, backlog: bool) -> list[_Pending]:
        """Releases whose work message is gone, to report to their owners (`lostwork`).

        Reads the release notes older than the grace; only when there are some, the
        figures of their offices' work queues (management API); only for offices whose
        queue has stayed idle, their tasks by `_id`.
        """
        now = utcnow()
        notes = [] if backlog else self._store.outstanding.old_releases(cutoff)
        figures = {o: self._figures(o) for o in sorted({str(n.get("office")) for n in notes})}
        idle = self._idle.observe(figures, now)
        watched = [n for n in notes if n.get("office") in idle]
        if not watched:
            return []
        grace = self._settings.sweep_grace_s
        lost = lost_releases(self._store.outstanding.in_flight(watched), idle, now, grace)
        return [
            (
                f"lost:{item.task_id}:{item.run}",
                item.task_id,
                item.office,
                item.dossier,
                MessageType.RELEASE_LOST,
                {"run": item.run, "empty_at": format_ts(item.empty_at)},
            )
            for item in lost
        ]
