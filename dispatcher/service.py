"""The `dossierflow dispatcher` process: sequencer consumers plus the outbox sweeper."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from broker import topology
from broker.errors import BrokerError, DecodeError, Unroutable
from broker.messages import Envelope, MessageType, decode, utcnow, valid_id
from broker.rabbitmq import Channel, Connection, Delivery
from dispatcher.failures import DeadLetter
from dispatcher.sequencer import Sequencer
from dispatcher.settings import Settings
from store import Store, StoreError, StoreUnavailable, TaskRecord

log = structlog.get_logger("dossierflow.dispatcher")


def _retrying(step: Callable[[], None], sleep: Callable[[float], None]) -> None:
    """Run `step`, retrying in place while the database is briefly unreachable.

    In place keeps the partition's order (a replica set election takes seconds); the
    waits go through the connection's own sleep so heartbeats keep flowing. After a
    minute it gives up and the process stops, handing the partition to a standby.
    """
    for attempt in Retrying(
        stop=stop_after_delay(60),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type(StoreUnavailable),
        sleep=sleep,
        reraise=True,
    ):
        with attempt:
            step()


class BrokerOutbound:
    """Publishes released tasks and retry timers, declaring office queues on demand."""

    def __init__(self, channel: Channel, topo: topology.Topology) -> None:
        self._ch = channel
        self._topo = topo
        self._declared: set[str] = set()

    def retry_later(self, delay_s: int, env: Envelope) -> None:
        """Park a retry timer in the fixed-delay queue of `delay_s`."""
        self._ch.publish(topology.retry_exchange(delay_s), env)

    def run(self, env: Envelope) -> None:
        """Release a task to its office's work queue."""
        if env.office not in self._declared:
            self._ch.declare_work_queue(env.office, self._topo)
            self._declared.add(env.office)
        try:
            self._ch.publish(topology.WORK_EXCHANGE, env)
        except Unroutable:
            # The office queue was deleted behind our back: declare it and publish again.
            self._ch.declare_work_queue(env.office, self._topo)
            self._ch.publish(topology.WORK_EXCHANGE, env)


def _dead_letter(delivery: Delivery) -> DeadLetter | None:
    """The dead-lettering facts of a work message, None for anything else."""
    death = delivery.death
    if death is None or not str(death.get("queue", "")).startswith("dossierflow.work."):
        return None  # not dead-lettered, or an expired retry timer (queue dossierflow.retry.*)
    return DeadLetter(
        reason=str(death.get("reason", "")),
        queue=str(death.get("queue", "")),
        count=max(int(death.get("count", 1) or 1), delivery.delivery_count),
        raw=delivery.body,
        message_id=delivery.message_id,
    )


class Dispatcher:
    """Consumes every control partition (standby where another process is active)."""

    def __init__(self, settings: Settings, store: Store, stop: threading.Event) -> None:
        self._settings = settings
        self._store = store
        self._stop = stop
        self._topo = settings.topology()
        self._name = f"dispatcher@{socket.gethostname()}:{os.getpid()}"
        self._failed = False
        # task id -> (times republished, monotonic time before which it is not again)
        self._republished: dict[str, tuple[int, float]] = {}
        self._next_sweep = time.monotonic() + settings.sweep_interval_s

    def run(self) -> int:
        """Run until `stop` is set; 1 if a partition thread failed (the process should restart).

        Partitions are spread over `sequencer_threads` threads, each with its own
        connection: a partition's messages stay in one thread (one after the other), while
        partitions wait on the database in parallel. The main thread runs the sweeper.
        """
        self._store.ensure_indexes()
        conn = Connection.open(
            self._settings.amqp_url, name=self._name, heartbeat=self._settings.heartbeat_s
        )
        try:
            self._publish_ch = conn.channel(confirm=True)
            self._publish_ch.declare_control(self._topo)
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
            log.info("dispatcher.started", name=self._name, partitions=len(queues), threads=count)
            while not self._stop.is_set():
                conn.sleep(min(1.0, self._settings.sweep_interval_s))
                if not self._stop.is_set():
                    self._sweep_if_due()
            for thread in threads:
                thread.join()
        finally:
            self._stop.set()
            conn.close()
            log.info("dispatcher.stopped", name=self._name)
        return 1 if self._failed else 0

    def _sweep_if_due(self) -> None:
        if time.monotonic() >= self._next_sweep:
            try:
                self.sweep()
            except (StoreError, BrokerError) as exc:
                # The next sweep tries again; a passing outage must not stop the dispatcher.
                log.warning("sweeper.failed", error=str(exc))
            self._next_sweep = time.monotonic() + self._settings.sweep_interval_s

    def _partitions(self, queues: list[str], index: int) -> None:
        """Consume some partitions until stop; any failure stops the whole process."""
        try:
            conn = Connection.open(
                self._settings.amqp_url,
                name=f"{self._name}/{index}",
                heartbeat=self._settings.heartbeat_s,
            )
        except BrokerError as exc:
            log.error("dispatcher.partitions_failed", error=str(exc), queues=queues)
            self._failed = True
            self._stop.set()
            return
        try:
            outbound = BrokerOutbound(conn.channel(confirm=True), self._topo)
            sequencer = Sequencer(self._store, outbound, self._topo.retry_delays)
            consume_ch = conn.channel(confirm=False)

            def on_message(delivery: Delivery) -> None:
                try:
                    self._handle(sequencer, delivery, conn.sleep)
                except StoreUnavailable:
                    raise  # a standby, or this process restarted, takes it from the partition
                except Exception as exc:
                    # A message this code cannot handle would stop the partition for good
                    # if it stayed at its head: park it for ops, keep the dossiers moving.
                    log.exception(
                        "control.parked",
                        error=type(exc).__name__,
                        key=delivery.routing_key,
                        message_id=delivery.message_id,
                    )
                    consume_ch.reject(delivery.delivery_tag, requeue=False)
                    return
                consume_ch.ack(delivery.delivery_tag)

            for queue in queues:
                consume_ch.consume(queue, on_message, prefetch=self._settings.sequencer_prefetch)
            while not self._stop.is_set():
                conn.pump(0.5)
        except Exception as exc:
            # Unacked messages go back to the partition (and to a standby): nothing is lost.
            log.exception("dispatcher.partitions_failed", error=type(exc).__name__, queues=queues)
            self._failed = True
            self._stop.set()
        finally:
            conn.close()

    def _handle(
        self, sequencer: Sequencer, delivery: Delivery, sleep: Callable[[float], None]
    ) -> None:
        dead = _dead_letter(delivery)
        try:
            env = decode(delivery.body, delivery.message_id)
        except DecodeError as exc:
            office, _, dossier = delivery.routing_key.partition(".")
            if dead is None or not (valid_id(office) and valid_id(dossier)):
                # Not from a work queue of ours: nothing to tie it to. Logged, dropped.
                log.error("control.unreadable", reason=exc.reason, key=delivery.routing_key)
                return
            _retrying(lambda: sequencer.handle_unreadable(office, dossier, dead), sleep)
            return
        _retrying(lambda: sequencer.handle(env, dead), sleep)

    def sweep(self) -> int:
        """Publish again what the sequencer should have seen by now; return how many.

        A task still `submitted` after the grace period either lost its command (its
        client died between the insert and the confirm) or waits behind a backlog; a task
        in `retry_wait` past its next attempt lost its timer (retry queues dead-letter at
        most once). A republished message is harmless either way (the sequencer ignores
        what it has seen), but republishing the same backlog every sweep would feed it:
        each is republished again only after twice its previous wait (grace, 2x, 4x...).
        """
        cutoff = utcnow() - timedelta(seconds=self._settings.sweep_grace_s)
        pending: list[tuple[str, TaskRecord, MessageType, dict[str, Any]]] = [
            (f"submitted:{t.id}", t, MessageType.SUBMITTED, {})
            for t in self._store.stale_submitted(cutoff)
        ] + [
            (
                f"retry:{t.id}:{t.retries}",
                t,
                MessageType.RETRY_DUE,
                {"retry": t.retries, "run": t.run},
            )
            for t in self._store.stale_retry_wait(cutoff)
        ]
        now = time.monotonic()
        keys = {key for key, *_ in pending}
        self._republished = {k: v for k, v in self._republished.items() if k in keys}
        due = [p for p in pending if self._republished.get(p[0], (0, 0.0))[1] <= now]
        for key, task, kind, data in due:
            times = self._republished.get(key, (0, 0.0))[0] + 1
            self._republished[key] = (times, now + self._settings.sweep_grace_s * 2**times)
            self._publish_ch.publish(
                topology.CONTROL_EXCHANGE,
                Envelope(kind, task.id, task.office, task.dossier, at=utcnow(), data=data),
            )
        if due:
            log.warning("sweeper.republished", count=len(due), stale=len(pending))
        return len(due)
