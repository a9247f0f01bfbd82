"""The connector loop: receive → decode → run → report → settle.

Each slot owns one AMQP connection with prefetch 1 and runs its handler in a helper
thread while the slot thread keeps pumping the connection, so heartbeats keep flowing
during a task of many minutes. The result event is published (and confirmed) before the
work message is acknowledged: a connector that dies in between makes the task run again,
which the idempotency key makes harmless.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from broker import topology
from broker.errors import (
    BrokerError,
    ChannelRefused,
    DecodeError,
    PublishNotConfirmed,
    Unroutable,
)
from broker.messages import Envelope, MessageType, decode, utcnow
from broker.rabbitmq import BatchPublisher, Channel, Connection, Delivery, Outgoing
from workers import handlers as _handlers  # noqa: F401  (registers the task kinds)
from workers.accounting.port import AccountingPackage, TaskRef
from workers.errors import InvalidSubmission, TransientError, classify
from workers.kinds import spec_for
from workers.metrics import WorkerMetrics

log = structlog.get_logger("dossierflow.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """What a connector needs: its office's broker access, never database credentials."""

    amqp_url: str
    office: str
    concurrency: int = 1
    heartbeat_s: int = 30
    delivery_limit: int = 5
    partitions: int = 8
    quorum_replicas: int = 0
    quick_retries: int = 3
    # Payload limit plus room for the envelope: anything bigger is not ours.
    max_message_bytes: int = 256 * 1024 + 16 * 1024
    name: str = ""


class Worker:
    """A connector process: `concurrency` slots competing on the office's work queue."""

    def __init__(
        self,
        config: WorkerConfig,
        package_factory: Callable[[], AccountingPackage],
        stop: threading.Event,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._config = config
        self._factory = package_factory
        self._stop = stop
        self.metrics = metrics or WorkerMetrics()
        self.name = config.name or f"worker@{socket.gethostname()}:{os.getpid()}"

    def run(self) -> None:
        """Run every slot until `stop` is set and each has finished its current task."""
        slots = [
            threading.Thread(target=self._slot, args=(i,), name=f"slot-{i}", daemon=True)
            for i in range(self._config.concurrency)
        ]
        self.metrics.slots.set(len(slots))
        for slot in slots:
            slot.start()
        for slot in slots:
            slot.join()
        log.info("worker.stopped", name=self.name, office=self._config.office)

    def _slot(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                _Slot(self, f"{self.name}/{index}").serve()
            except BrokerError as exc:
                log.warning("worker.connection_lost", name=self.name, error=str(exc))
                self._stop.wait(1.0)
            except Exception as exc:
                # Whatever broke this slot, the work queue still needs it: the unacked
                # message went back to the queue with the connection; start over.
                log.exception("worker.slot_failed", name=self.name, error=type(exc).__name__)
                self._stop.wait(5.0)


class _Slot:
    """One connection, one task at a time."""

    def __init__(self, worker: Worker, name: str) -> None:
        self._w = worker
        self._cfg = worker._config
        self._name = name
        self._package = worker._factory()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pub: BatchPublisher

    def serve(self) -> None:
        conn = Connection.open(self._cfg.amqp_url, name=self._name, heartbeat=self._cfg.heartbeat_s)
        try:
            found = self._work_queue(conn)
            if found is None:
                return
            ch, queue = found
            self._pub = conn.publisher()
            log.info("worker.ready", name=self._name, queue=queue)
            for delivery in ch.deliveries(queue, prefetch=1, idle_seconds=0.5):
                if delivery is not None:
                    self._process(conn, ch, delivery)
                if self._w._stop.is_set():
                    break
            ch.stop_consuming()
        finally:
            conn.close()
            # A handler still running (the connection broke under it) finishes before
            # this slot reconnects: its task is redelivered and must not run twice at once.
            self._pool.shutdown(wait=True)
            self._package.close()

    def _work_queue(self, conn: Connection) -> tuple[Channel, str] | None:
        """A channel on the office's work queue, once it exists; None if stopped meanwhile.

        Declaring the queue names its dead-letter exchange, and RabbitMQ then wants write
        permission on that exchange, which a per-office login has not (a connector must
        not publish dead letters). Such a connector uses the queue the dispatcher declares
        at the office's first release, and waits for it; one login for everything (the
        local mode) declares it here.
        """
        topo = topology.Topology(
            self._cfg.partitions,
            self._cfg.delivery_limit,
            quorum_replicas=self._cfg.quorum_replicas,
        )
        name, waiting = topology.work_queue(self._cfg.office), False
        while not self._w._stop.is_set():
            ch = conn.channel(confirm=True)
            try:
                ch.depth(name)
                return ch, name
            except ChannelRefused as exc:
                if exc.code != 404:
                    raise
            ch = conn.channel(confirm=True)
            try:
                return ch, ch.declare_work_queue(self._cfg.office, topo)
            except ChannelRefused as exc:
                if exc.code != 403:
                    raise
            if not waiting:
                log.info("worker.waiting_for_queue", name=self._name, queue=name)
                waiting = True
            conn.sleep(1.0)
        return None

    def _process(self, conn: Connection, ch: Channel, delivery: Delivery) -> None:
        try:
            env, spec, payload = self._readable(delivery)
        except (DecodeError, InvalidSubmission, ValueError) as exc:
            # Cannot run: dead-letter it; the sequencer turns it into a red instruction.
            log.error("work.unreadable", error=str(exc)[:200], routing_key=delivery.routing_key)
            ch.reject(delivery.delivery_tag, requeue=False)
            self._w.metrics.unreadable(self._cfg.office)
            return
        attempt = delivery.delivery_count + 1
        report = partial(self._report, env, _route(delivery, self._cfg.partitions, env.routing_key))
        ref = TaskRef(env.task_id, env.office, env.dossier, spec.kind, attempt)
        bound = log.bind(
            office=env.office,
            dossier=env.dossier,
            task_id=env.task_id,
            kind=spec.kind,
            attempt=attempt,
        )
        # `started` goes out without waiting: its confirm is awaited with the result's.
        report(MessageType.STARTED, {"attempt": attempt, "worker": self._name})
        bound.debug("task.started")
        metrics, run = self._w.metrics, env.data.get("run")
        metrics.started(env.task_id, spec.kind, run if isinstance(run, int) else 0, attempt)
        began = time.monotonic()
        future: Future[dict[str, Any]] = self._pool.submit(
            self._run_with_retries, spec.handler, ref, payload
        )
        future.add_done_callback(lambda _f: conn.call_threadsafe(lambda: None))
        while not future.done():
            conn.pump(1.0)
        try:
            result = future.result()
        except Exception as exc:
            failure = classify(exc)
            outcome = "transient" if failure.transient else "failed"
            took = time.monotonic() - began
            metrics.finished(env.office, spec.kind, outcome, took, failure.code.value)
            bound.warning("task.failed", code=failure.code.value, transient=failure.transient)
            report(MessageType.FAILED, {"attempt": attempt, "error": failure.to_dict()})
        else:
            metrics.finished(env.office, spec.kind, "done", time.monotonic() - began)
            bound.debug("task.done")
            report(MessageType.DONE, {"attempt": attempt, "result": result})
        # The result is confirmed before the work message is acknowledged.
        self._confirmed(conn)
        if self._w._stop.is_set():
            # Cancel while this message is still unacked: with prefetch 1 nothing else is
            # buffered yet, so stopping returns no message (a return counts as a failed
            # delivery towards the queue's delivery limit).
            ch.stop_consuming()
        ch.ack(delivery.delivery_tag)

    def _confirmed(self, conn: Connection) -> None:
        """Wait for the events' confirms; send again, after a pause, what the broker refused.

        A control partition past its byte limit refuses publishes (a flood, a dispatcher
        that is behind). Reconnecting would give the work message back, and each return
        counts towards the work queue's delivery limit: an office's task must not fail for
        good because another office flooded. So the message stays unacknowledged here
        while the event waits for room; heartbeats flow through the pauses.
        """
        pause = 0.2
        while True:
            try:
                if self._pub.wait():
                    raise Unroutable("no control partition took the task's result")
                return
            except PublishNotConfirmed as exc:
                if self._w._stop.is_set() or not exc.refused:
                    raise
                log.warning("worker.event_refused", name=self._name, retry_in=pause)
                conn.sleep(pause)
                pause = min(pause * 2, 5.0)
                self._pub.send(exc.refused)

    def _readable(self, delivery: Delivery) -> tuple[Envelope, Any, Any]:
        """Decode and validate a work message, or raise why it cannot be run."""
        if len(delivery.body) > self._cfg.max_message_bytes:
            raise ValueError(f"message of {len(delivery.body)} bytes is over the size limit")
        env = decode(delivery.body, delivery.message_id)
        if env.type is not MessageType.RUN:
            raise ValueError(f"a {env.type.value} message has no place in a work queue")
        if env.office != self._cfg.office:
            raise ValueError("the message belongs to another office")
        spec = spec_for(str(env.data.get("kind", "")))
        return env, spec, spec.validate(env.data.get("payload", {}))

    def _run_with_retries(self, handler: Any, ref: TaskRef, payload: Any) -> dict[str, Any]:
        for attempt in Retrying(
            stop=stop_after_attempt(self._cfg.quick_retries),
            wait=wait_exponential(multiplier=0.1, max=2),
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        ):
            with attempt:
                result: dict[str, Any] = handler(ref, payload, self._package)
        return result

    def _report(
        self, env: Envelope, route: dict[str, str], kind: MessageType, data: dict[str, Any]
    ) -> None:
        # Every event goes through the events exchange, the only one a connector's login
        # may write to on the control side, and carries the login as `user_id`.
        run = env.data.get("run")
        if isinstance(run, int):
            data = {**data, "run": run}  # which release this is about: stale ones are ignored
        event = Envelope(kind, env.task_id, env.office, env.dossier, at=utcnow(), data=data)
        self._pub.send([Outgoing(topology.EVENTS_EXCHANGE, event, route)])


def _route(delivery: Delivery, partitions: int, key: str) -> dict[str, str]:
    """The partition header for the events about a work message.

    The work message's own header: events go back to the partition that released the
    work. A work message without one (released by an earlier version) gets the partition
    computed from the dossier key, as every publisher of this version does.
    """
    value = delivery.header(topology.PARTITION_HEADER)
    if value.isascii() and value.isdigit():
        return {topology.PARTITION_HEADER: value}
    return topology.partition_headers(key, partitions)
