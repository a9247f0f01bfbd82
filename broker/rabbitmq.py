"""The AMQP adapter: the only module that imports the AMQP client (pika).

pika's BlockingConnection is not thread-safe: a connection and its channels belong to the
thread that opened them. Other threads hand work back with `call_threadsafe`. Heartbeats
flow only while the owning thread runs `pump` (or consumes), so a long handler runs in
another thread while the owner keeps pumping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from broker import topology
from broker.addresses import rotated, split_urls
from broker.errors import (
    BrokerUnavailable,
    ChannelRefused,
    ConnectionLost,
    PublishNotConfirmed,
    Unroutable,
)
from broker.messages import Envelope, encode

_LOST = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ConnectionWrongStateError,
    ConnectionResetError,
)


@dataclass(frozen=True)
class Delivery:
    """One received message, not yet settled."""

    body: bytes
    delivery_tag: int
    redelivered: bool
    routing_key: str
    exchange: str
    message_id: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    consumer_tag: str = ""
    user_id: str = ""

    def header(self, name: str) -> str:
        """A header's value as text, "" when it is absent or no text."""
        return header_text(self.headers.get(name))

    @property
    def delivery_count(self) -> int:
        """How often this message was delivered before (0 the first time).

        Quorum queues count in `x-delivery-count`; RabbitMQ 4.3 narrowed that header to
        failed deliveries and added `x-acquired-count` for every assignment. The larger
        of the two, and at least 1 on a redelivery, reads right on 3.x and 4.x alike.
        """
        counts = [self.headers.get(h, 0) for h in ("x-delivery-count", "x-acquired-count")]
        seen = max((int(c) for c in counts if isinstance(c, int)), default=0)
        return max(seen, 1) if self.redelivered else seen

    @property
    def death(self) -> Mapping[str, Any] | None:
        """The first x-death entry when the message was dead-lettered, else None."""
        deaths = self.headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
            return deaths[0]
        return None


def _delivery(method: Any, props: Any, body: bytes) -> Delivery:
    return Delivery(
        body=body,
        delivery_tag=method.delivery_tag,
        redelivered=bool(method.redelivered),
        routing_key=method.routing_key,
        exchange=method.exchange,
        message_id=props.message_id or "",
        headers=dict(props.headers or {}),
        consumer_tag=getattr(method, "consumer_tag", "") or "",
        user_id=props.user_id or "",
    )


class Channel:
    """A channel: declare, publish with confirms and `mandatory`, consume with manual acks."""

    def __init__(self, channel: BlockingChannel, confirm: bool, user: str = "") -> None:
        self._ch = channel
        self._confirm = confirm
        self._user = user  # the login: every publish carries it as `user_id`
        self._tags: list[str] = []
        self._generator = False  # a `deliveries` consumer is active

    # -- topology -------------------------------------------------------------------
    def declare_control(self, topo: topology.Topology) -> None:
        """Declare the control exchange, its partitions and the dead-letter path."""
        with _mapped():
            self._ch.exchange_declare(
                topology.CONTROL_EXCHANGE, topology.CONTROL_EXCHANGE_TYPE, durable=True
            )
            self._ch.exchange_declare(
                topology.PARTITIONS_EXCHANGE,
                "headers",
                durable=True,
                arguments={"alternate-exchange": topology.CONTROL_EXCHANGE},
            )
            self._ch.exchange_declare(topology.WORK_EXCHANGE, "topic", durable=True)
            self._ch.exchange_declare(topology.DEAD_EXCHANGE, "fanout", durable=True)
            self._ch.exchange_declare(topology.CHANGES_EXCHANGE, "fanout", durable=True)
            self._ch.exchange_declare(topology.EVENTS_EXCHANGE, "topic", durable=True)
            # Exchange-to-exchange: a dead-lettered task keeps its `partition` header and
            # so lands in its own dossier's partition; the connectors' events carry the
            # header of the work message they report on. Bindings of earlier versions into
            # the control exchange go, or each such message would arrive twice.
            for source, key in ((topology.DEAD_EXCHANGE, ""), (topology.EVENTS_EXCHANGE, "#")):
                self._ch.exchange_unbind(topology.CONTROL_EXCHANGE, source, key)
                self._ch.exchange_bind(topology.PARTITIONS_EXCHANGE, source, key)
            self._ch.exchange_declare(topology.PARKED_EXCHANGE, "fanout", durable=True)
            self._ch.queue_declare(
                topology.PARKED_QUEUE,
                durable=True,
                arguments=topology.quorum_arguments(topo.quorum_replicas),
            )
            self._ch.queue_bind(topology.PARKED_QUEUE, topology.PARKED_EXCHANGE, "")
            for delay in topo.retry_delays:
                name = topology.retry_exchange(delay)
                self._ch.exchange_declare(name, "fanout", durable=True)
                self._ch.queue_declare(
                    name,
                    durable=True,
                    arguments=topology.retry_arguments(delay, topo.quorum_replicas),
                )
                self._ch.queue_bind(name, name, "")
            for name in topo.partition_queues():
                args = topology.partition_arguments(topo.quorum_replicas, topo.partition_max_bytes)
                self._ch.queue_declare(name, durable=True, arguments=args)
                self._ch.queue_bind(
                    name, topology.CONTROL_EXCHANGE, routing_key=str(topology.PARTITION_WEIGHT)
                )
                self._ch.queue_bind(
                    name,
                    topology.PARTITIONS_EXCHANGE,
                    arguments=topology.partition_binding(topology.partition_index(name)),
                )

    def declare_work_queue(self, office: str, topo: topology.Topology) -> str:
        """Declare an office's work queue and its binding; return the queue name."""
        name = topology.work_queue(office)
        with _mapped():
            self._ch.queue_declare(
                name,
                durable=True,
                arguments=topology.work_arguments(topo.delivery_limit, topo.quorum_replicas),
            )
            self._ch.queue_bind(name, topology.WORK_EXCHANGE, topology.work_binding(office))
        return name

    def ready(self, queue: str) -> int:
        """Messages waiting in a queue (not counting those delivered and unacknowledged)."""
        return self.depth(queue)[0]

    def depth(self, queue: str) -> tuple[int, int]:
        """Messages waiting in a queue, and its consumers (active or standby)."""
        with _mapped():
            frame = self._ch.queue_declare(queue, passive=True)
        return int(frame.method.message_count), int(frame.method.consumer_count)

    # -- publishing -----------------------------------------------------------------
    def publish(
        self,
        exchange: str,
        envelope: Envelope,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish persistently and mandatorily; with confirms, return once stored."""
        self.publish_raw(
            exchange,
            envelope.routing_key,
            encode(envelope),
            message_id=envelope.id,
            message_type=envelope.type.value,
            headers={"office": envelope.office, "dossier": envelope.dossier, **(headers or {})},
        )

    def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        message_type: str | None = None,
        headers: Mapping[str, Any] | None = None,
        expiration_ms: int | None = None,
    ) -> None:
        """Publish bytes as they are (tests use it for poison messages)."""
        props = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            user_id=self._user or None,
            message_id=message_id,
            type=message_type,
            headers=dict(headers or {}),
            expiration=str(expiration_ms) if expiration_ms is not None else None,
        )
        try:
            self._ch.basic_publish(exchange, routing_key, body, props, mandatory=True)
        except pika.exceptions.UnroutableError as exc:
            raise Unroutable(f"no queue took {routing_key!r} on {exchange!r}") from exc
        except pika.exceptions.NackError as exc:
            raise PublishNotConfirmed(f"broker nacked {routing_key!r} on {exchange!r}") from exc
        except _LOST as exc:
            raise ConnectionLost(f"publish failed: {type(exc).__name__}") from exc

    # -- consuming ------------------------------------------------------------------
    def consume(self, queue: str, on_message: Callable[[Delivery], None], prefetch: int) -> str:
        """Register a callback consumer with manual acks; return its tag."""
        with _mapped():
            self._ch.basic_qos(prefetch_count=prefetch)
            tag: str = self._ch.basic_consume(
                queue,
                lambda _ch, method, props, body: on_message(_delivery(method, props, body)),
                auto_ack=False,
            )
        self._tags.append(tag)
        return tag

    def declare_listener(self, exchange: str, *, max_length: int, declare: bool = True) -> str:
        """An exclusive, server-named queue bound to a fanout `exchange`; return its name.

        It goes away with the connection: a listener that was away missed what was sent.
        `declare` False: the exchange is someone else's to declare (a login without
        configure permission on it binds to it as it is; NOT_FOUND while it is missing).
        """
        with _mapped():
            if declare:
                self._ch.exchange_declare(exchange, "fanout", durable=True)
            ok = self._ch.queue_declare(
                "",
                exclusive=True,
                auto_delete=True,
                arguments={"x-max-length": max_length, "x-overflow": "drop-head"},
            )
            name: str = ok.method.queue
            self._ch.queue_bind(name, exchange, "")
        return name

    def consume_transient(self, queue: str, on_body: Callable[[bytes], None]) -> str:
        """Consume with automatic acks (notices that may be lost); return the tag."""
        with _mapped():
            tag: str = self._ch.basic_consume(
                queue, lambda _ch, _method, _props, body: on_body(body), auto_ack=True
            )
        self._tags.append(tag)
        return tag

    def deliveries(
        self, queue: str, prefetch: int, idle_seconds: float
    ) -> Iterator[Delivery | None]:
        """Yield deliveries one by one, or None after `idle_seconds` without one."""
        with _mapped():
            self._ch.basic_qos(prefetch_count=prefetch)
            self._generator = True
            for method, props, body in self._ch.consume(
                queue, auto_ack=False, inactivity_timeout=idle_seconds
            ):
                if method is None:
                    yield None
                else:
                    yield _delivery(method, props, body or b"")

    def stop_consuming(self) -> None:
        """Cancel every consumer of this channel; unacked messages stay unacked."""
        with _mapped():
            for tag in self._tags:
                self._ch.basic_cancel(tag)
            self._tags.clear()
            if self._generator and self._ch.is_open:
                self._ch.cancel()
            self._generator = False

    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """Acknowledge: the message is handled and may be removed."""
        with _mapped():
            self._ch.basic_ack(delivery_tag, multiple=multiple)

    def reject(self, delivery_tag: int, requeue: bool) -> None:
        """Reject: requeue for another try, or dead-letter when `requeue` is false."""
        with _mapped():
            self._ch.basic_reject(delivery_tag, requeue=requeue)

    @property
    def is_open(self) -> bool:
        """Whether the channel can still be used."""
        return bool(self._ch.is_open)


@dataclass(frozen=True)
class Outgoing:
    """One message of a batch: where it goes and its bytes."""

    exchange: str
    envelope: Envelope
    headers: Mapping[str, Any] | None = None


def header_text(value: object) -> str:
    """A header value as text (pika gives bytes for what is not valid UTF-8), else ""."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Forward:
    """A received message sent on as it is, to `exchange` with other `headers`."""

    exchange: str
    delivery: Delivery
    headers: Mapping[str, Any]


def _properties(envelope: Envelope, headers: Mapping[str, Any] | None, user: str) -> Any:
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        # RabbitMQ refuses (406) a `user_id` that is not the publisher's login, so a
        # receiver may believe it: the dispatcher checks who sent an event by it.
        user_id=user or None,
        message_id=envelope.id,
        type=envelope.type.value,
        headers={"office": envelope.office, "dossier": envelope.dossier, **(headers or {})},
    )


# The message id of every notice (`BatchPublisher.notify`): how its return is told apart.
NOTICE_ID = "dossierflow-notice"


class BatchPublisher:
    """Publishes many messages, then waits for all their confirms together.

    pika's BlockingChannel waits for each confirm in turn, which caps a publisher at a
    few thousand messages a second; here every publish of a batch goes out at once and
    the broker's (possibly multiple) acks are collected in one wait. Every publish is
    `mandatory`: a message no queue takes comes back and is reported, never lost.
    """

    def __init__(self, channel: BlockingChannel, user: str = "") -> None:
        self._user = user
        # The blocking channel's private parts: its asynchronous channel (publish without
        # waiting) and its flush (pump the connection until a condition holds).
        raw: Any = channel
        self._ch = raw
        self._impl = raw._impl
        self._next_tag = 1
        self._pending: dict[int, Outgoing | Forward | None] = {}  # None: a notice

        self._nacked: list[Outgoing | Forward] = []
        self._returned: list[tuple[str, str]] = []  # (message id, routing key)
        self._notice_returned = False
        self._sent: list[Outgoing] = []
        self._forwarded: list[Forward] = []
        selected: list[bool] = []
        with _mapped():
            self._impl.confirm_delivery(
                ack_nack_callback=self._on_confirm, callback=lambda _f: selected.append(True)
            )
            self._impl.add_on_return_callback(self._on_return)
            self._ch._flush_output(lambda: bool(selected))

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tags = (
            [t for t in self._pending if t <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        nack = isinstance(method, pika.spec.Basic.Nack)
        for tag in tags:
            item = self._pending.pop(tag, None)
            if nack and item is not None:
                self._nacked.append(item)

    def _on_return(self, _ch: Any, method: Any, props: Any, _body: bytes) -> None:
        if props.message_id == NOTICE_ID:
            self._notice_returned = True
            return
        self._returned.append((props.message_id or "", method.routing_key))

    def send(self, items: list[Outgoing]) -> None:
        """Publish without waiting: `wait` collects the confirms of everything sent."""
        with _mapped():
            for item in items:
                env = item.envelope
                self._impl.basic_publish(
                    exchange=item.exchange,
                    routing_key=env.routing_key,
                    body=encode(env),
                    properties=_properties(env, item.headers, self._user),
                    mandatory=True,
                )
                self._pending[self._next_tag] = item
                self._sent.append(item)
                self._next_tag += 1

    def forward(self, items: list[Forward]) -> None:
        """Publish received messages on without waiting, body and message id unchanged.

        They go out as this publisher's login (`user_id`); what the receiver must know of
        the original sender goes in `headers`. `wait` collects their confirms, and raises
        Unroutable if one came back.
        """
        with _mapped():
            for item in items:
                d = item.delivery
                self._impl.basic_publish(
                    exchange=item.exchange,
                    routing_key=d.routing_key,
                    body=d.body,
                    properties=pika.BasicProperties(
                        content_type="application/json",
                        delivery_mode=pika.DeliveryMode.Persistent,
                        user_id=self._user or None,
                        message_id=d.message_id or None,
                        headers=dict(item.headers),
                    ),
                    mandatory=True,
                )
                self._pending[self._next_tag] = item
                self._forwarded.append(item)
                self._next_tag += 1

    def wait(self) -> list[Outgoing]:
        """Wait for the confirms of everything sent; return the items no queue took.

        Raises PublishNotConfirmed if the broker nacked any, ConnectionLost if the
        connection or channel broke before every confirm arrived.
        """
        sent, self._sent = self._sent, []
        forwarded, self._forwarded = self._forwarded, []
        with _mapped():
            self._ch._flush_output(lambda: not self._pending)
        if self._pending:
            raise ConnectionLost("channel closed before every publish was confirmed")
        nacked, self._nacked = self._nacked, []
        returned, self._returned = set(self._returned), []
        if nacked:
            raise PublishNotConfirmed(f"broker nacked {len(nacked)} message(s)", nacked)
        if any((f.delivery.message_id, f.delivery.routing_key) in returned for f in forwarded):
            raise Unroutable("a forwarded message found no queue")
        return [i for i in sent if (i.envelope.id, i.envelope.routing_key) in returned]

    def notify(self, exchange: str, body: bytes) -> None:
        """Publish a transient notice: nobody listening is no error, but it is reported.

        Its confirm is collected by the next `wait` like any other; a nack is ignored. It
        is `mandatory`: after that `wait`, `unheard()` says whether it came back because
        no queue is bound (nobody listens).
        """
        with _mapped():
            self._impl.basic_publish(
                exchange=exchange,
                routing_key="",
                body=body,
                properties=pika.BasicProperties(
                    content_type="application/json", delivery_mode=1, message_id=NOTICE_ID
                ),
                mandatory=True,
            )
            self._pending[self._next_tag] = None
            self._next_tag += 1

    def unheard(self) -> bool:
        """Whether a notice came back unrouted since the last call (then: nobody listens)."""
        found, self._notice_returned = self._notice_returned, False
        return found

    def publish_all(self, items: list[Outgoing]) -> list[Outgoing]:
        """Publish every item and wait for the confirms; return the items no queue took."""
        self.send(items)
        return self.wait()


class _mapped:
    """Context manager translating pika exceptions into broker errors."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code in (403, 404):
            raise ChannelRefused(f"{exc.reply_code}: {exc.reply_text}", exc.reply_code) from exc
        if exc is not None and isinstance(exc, _LOST):
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc


def _parameters(url: str, name: str, heartbeat: int) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 60
    params.client_properties = {"connection_name": name}
    params.connection_attempts = 1
    return params


class Connection:
    """One AMQP connection, owned by the thread that opened it."""

    def __init__(self, conn: BlockingConnection) -> None:
        self._conn = conn
        # The login this connection authenticated with (of the node it reached).
        impl: Any = getattr(conn, "_impl", None)
        credentials = getattr(getattr(impl, "params", None), "credentials", None)
        self.user: str = str(getattr(credentials, "username", "") or "")

    @classmethod
    def open(
        cls,
        url: str,
        *,
        name: str,
        heartbeat: int = 30,
        attempts: int = 8,
        max_wait: float = 5.0,
    ) -> Connection:
        """Connect with bounded exponential retries; BrokerUnavailable when they run out.

        `url` may list several nodes of a cluster (comma or semicolon separated): each
        attempt tries them all, from a node chosen at random so that connections spread.
        """
        params = [_parameters(u, name, heartbeat) for u in rotated(split_urls(url))]
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential(multiplier=0.2, max=max_wait),
                retry=retry_if_exception_type(pika.exceptions.AMQPConnectionError),
                reraise=False,
            ):
                with attempt:
                    return cls(pika.BlockingConnection(params))
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise BrokerUnavailable(f"cannot reach broker: {type(cause).__name__}") from cause
        except pika.exceptions.ProbableAuthenticationError as exc:
            raise BrokerUnavailable("broker refused the credentials") from exc
        raise BrokerUnavailable("unreachable")  # pragma: no cover - loop always returns

    def channel(self, *, confirm: bool = True) -> Channel:
        """Open a channel; with `confirm`, every publish waits for the broker's confirm."""
        with _mapped():
            ch = self._conn.channel()
            if confirm:
                ch.confirm_delivery()
        return Channel(ch, confirm, self.user)

    def publisher(self) -> BatchPublisher:
        """A channel of its own that publishes batches with their confirms awaited together."""
        with _mapped():
            ch = self._conn.channel()
        return BatchPublisher(ch, self.user)

    def pump(self, seconds: float) -> None:
        """Process I/O (heartbeats, deliveries, callbacks) for up to `seconds`."""
        with _mapped():
            self._conn.process_data_events(time_limit=seconds)

    def call_threadsafe(self, fn: Callable[[], None]) -> None:
        """Run `fn` in the owning thread at its next pump (the only cross-thread call)."""
        with _mapped():
            self._conn.add_callback_threadsafe(fn)

    def sleep(self, seconds: float) -> None:
        """Wait while keeping the connection alive."""
        with _mapped():
            self._conn.sleep(seconds)

    @property
    def is_open(self) -> bool:
        """Whether the connection is usable."""
        return bool(self._conn.is_open)

    def close(self) -> None:
        """Close, ignoring a connection that is already gone."""
        try:
            if self._conn.is_open:
                self._conn.close()
        except _LOST:
            pass
