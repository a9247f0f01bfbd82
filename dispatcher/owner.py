"""The partition owner: the batched shell around the pure rules of `dispatcher.core`.

One owner consumes some control partitions on one connection. It collects what arrives
within a few milliseconds (up to `batch_max` messages), runs the rules over it against the
dossiers it keeps in memory, writes the batch's effects with a constant number of bulk
store commands, publishes every release and timer with their confirms awaited together,
and only then acknowledges the batch. A crash anywhere before the acknowledgement gives
the whole batch to the successor, whose replay completes it (see `dispatcher.core`).

Each partition is held with an epoch taken in the store when this owner becomes active
on it; every task and dossier write is conditional on it (fencing). An owner that finds
a newer epoch raises Fenced: its caller drops it (and its memory) and reconnects.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import structlog

from broker import topology
from broker.errors import BrokerError, PublishNotConfirmed, Unroutable
from broker.messages import RAW_KEEP_BYTES, utcnow, valid_id
from broker.rabbitmq import Connection, Delivery, Forward, Outgoing, header_text
from dispatcher import core
from dispatcher.batchwrite import Collector, Notices
from dispatcher.fairness import next_batch, office_of
from dispatcher.inbound import (
    DeadLettered,
    Inbound,
    Message,
    ReleaseLost,
    Submitted,
    Unreadable,
    inbound,
)
from dispatcher.loading import load_dossiers
from dispatcher.metrics import SequencerMetrics
from dispatcher.senders import Senders, death_of
from store import Fenced, Store, StoreUnavailable
from workers.vocabulary import TaskStatus

log = structlog.get_logger("dossierflow.sequencer")
T = TypeVar("T")
# A dossier, the task its message was about as it was before the rules ran, the effects.
_Seen = tuple[core.Dossier, core.OpenTask | None, list[core.Effect]]
STORE_WAIT_S = 60.0
# How long the owner pumps the broker connection at a time while a store step runs.
PUMP_S = 0.5
# Accepted and unfinished: a task in one of these is part of its dossier's order.
OPEN_STATUSES = (
    TaskStatus.WAITING,
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.RETRY_WAIT,
    TaskStatus.FAILED,
)


@dataclass(frozen=True)
class OwnerConfig:
    """How an owner batches."""

    name: str
    batch_max: int = 256
    linger_s: float = 0.005
    prefetch: int = 512
    # A bigger message is dropped unread (0: no check). The broker's `max_message_size`
    # refuses them first; this holds where a broker was set up without it.
    max_message_bytes: int = 0
    # At most one change notice this often (`batchwrite.Notices`): the page reads what
    # changed at most once a second (`dispatcher.api.snapshot.APPLY_EVERY_S`).
    notice_every_s: float = 1.0


# After taking over a partition from an earlier owner, this long the owner checks, before
# accepting a dossier's submission, that no task submitted before it is still unaccepted
# (see `Owner._accept_earlier`).
SETTLE_S = 30.0
# What an owner that forwards a message of another partition's dossier knows of its sender.
FORWARDED_HEADER = "forwarded"


@dataclass
class _Held:
    """A partition this owner is active on, and the dossiers of it met so far."""

    epoch: int
    dossiers: dict[str, core.Dossier] = field(default_factory=dict)
    settle_until: float = 0.0  # monotonic time; 0: the partition had no earlier owner


@dataclass
class _Item:
    """One delivery of a batch, decoded, with its partition."""

    delivery: Delivery
    part: str
    decoded: Inbound


class Owner:
    """Owns the partitions it is active on, for as long as its connection lives."""

    def __init__(
        self,
        store: Store,
        conn: Connection,
        topo: topology.Topology,
        queues: list[str],
        config: OwnerConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        metrics: SequencerMetrics | None = None,
        senders: Senders | None = None,
        store_thread: Executor | None = None,
    ) -> None:
        self._seq = store.sequencing
        # Where store steps run while this thread pumps the connection (`_pumped`); the
        # dispatcher gives each partition thread one for all its owners in turn, so an
        # old owner's step still running ends before the next owner's first one starts.
        self._store_thread = store_thread or ThreadPoolExecutor(1, "owner-store")
        self._senders = senders or Senders()
        self._conn = conn
        self._topo = topo
        self._queues = queues
        self._cfg = config
        self._notices = Notices(config.notice_every_s)
        self._rules = core.Rules(topo.retry_delays)
        self._now = clock
        self._buffer: list[Delivery] = []
        self._light_turn = True  # whether light offices may go first (`dispatcher.fairness`)
        self._queue_of: dict[str, str] = {}  # consumer tag -> partition queue
        self._held: dict[str, _Held] = {}
        self._batches = 0
        self._declared: set[str] = set()
        self._stale: set[str] = set()  # dossiers to read again (see `_reload_stale`)
        # Tasks accepted from their notes (`_accept_earlier`), with when: their own
        # command, when it comes, is not a new submission.
        self._from_notes: dict[str, float] = {}
        self.handled = 0  # messages, for the process's figures
        self._metrics = metrics or SequencerMetrics()
        self._tally = self._metrics.tally(config.name)

    @property
    def holds(self) -> bool:
        """Whether this owner is active on at least one partition."""
        return bool(self._held)

    def serve(self, stopping: Callable[[], bool]) -> None:
        """Consume and handle batches until `stopping()`; broker and store errors propagate."""
        self._consume_ch = self._conn.channel(confirm=False)
        self._declare_ch = self._conn.channel(confirm=True)
        self._publisher = self._conn.publisher()
        for queue in self._queues:
            tag = self._consume_ch.consume(queue, self._buffer.append, prefetch=self._cfg.prefetch)
            self._queue_of[tag] = queue
        while not stopping():
            if not self._buffer:
                self._conn.pump(0.2)
                if (notice := self._notices.due()) is not None:
                    self._publish([], notice)  # what the last batches changed
                continue
            deadline = time.monotonic() + self._cfg.linger_s
            while len(self._buffer) < self._cfg.batch_max:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._conn.pump(left)
            self.handle(self._take())

    def _take(self) -> list[Delivery]:
        """The next batch out of the buffer, fairly across offices (`dispatcher.fairness`)."""
        offices = [office_of(d.routing_key) for d in self._buffer]
        picked, light = next_batch(offices, self._cfg.batch_max, self._light_turn)
        self._light_turn = not light
        if picked[-1] == len(picked) - 1:  # the head of the buffer, as it came
            batch = self._buffer[: len(picked)]
            del self._buffer[: len(picked)]
            return batch
        chosen = set(picked)
        batch = [self._buffer[n] for n in picked]
        self._buffer[:] = [d for n, d in enumerate(self._buffer) if n not in chosen]
        return batch

    # -- one batch ----------------------------------------------------------------------
    def handle(self, batch: list[Delivery]) -> None:
        """Decide, write, publish, then acknowledge the whole batch."""
        now = self._now()
        self._batches += 1
        items = [_Item(d, self._queue_of[d.consumer_tag], self._decode(d)) for d in batch]
        misrouted = [i for i in items if self._misrouted(i)]
        returned: set[int] = set()
        if misrouted:
            returned = self._forward(misrouted)
            items = [i for i in items if i not in misrouted]
        parked, count = self._run(items, now, len(batch)) if items else (set(), None)
        parked |= returned
        self._ack([d.delivery_tag for d in batch if d.delivery_tag not in parked])
        self.handled += len(batch)
        if count is not None:
            count()  # the metrics, once the batch is acknowledged

    def _run(
        self, items: list[_Item], now: datetime, size: int
    ) -> tuple[set[int], Callable[[], None]]:
        """Run the rules over a batch's messages, write and publish their effects.

        Returns the delivery tags of what was parked (rejected) instead of handled, and
        what feeds the metrics (a failed batch is counted by its replay).
        """
        parts = {i.part for i in items}
        self._take_new(parts, now)
        part_docs = self._stored(lambda: self._seq.partitions(parts))
        for part in parts:
            if int(part_docs.get(part, {}).get("epoch", 0)) != self._held[part].epoch:
                raise Fenced(f"partition {part} has a newer owner")
        out = Collector(now, self._batches)
        dossiers = self._dossiers(items, part_docs, out)
        rechecked = self._recheck(items, dossiers)
        self._reload_stale(items, dossiers, out)
        self._accept_earlier(items, dossiers, now, out)
        parked: set[int] = set()
        seen: list[_Seen] = []  # for the metrics
        for n, item in enumerate(items):
            msg = item.decoded.message
            if msg is None:
                log.warning(
                    "control.dropped",
                    key=item.delivery.routing_key,
                    why=item.decoded.problem,
                    message_id=item.delivery.message_id,
                    exchange=item.delivery.exchange,
                    user=item.delivery.user_id,
                )
                continue
            dossier = dossiers[item.decoded.key]
            msg = self._resolved(rechecked.get(n, msg), n in rechecked, dossier)
            if msg is None:
                continue
            before = dossier.tasks.get(_task_of(msg))
            try:
                effects = core.step(dossier, msg, now, self._rules)
            except Exception as exc:
                # A message these rules cannot handle would come back forever and stop its
                # partition: park it for ops and keep the dossiers moving.
                log.exception(
                    "control.parked",
                    error=type(exc).__name__,
                    key=dossier.key,
                    message_id=item.delivery.message_id,
                )
                self._consume_ch.reject(item.delivery.delivery_tag, requeue=False)
                parked.add(item.delivery.delivery_tag)
                continue
            self._record(out, item.part, dossier, effects)
            seen.append((dossier, before, effects))
        write = out.finish()
        self._stored(lambda: self._seq.write(write))
        self._notices.add(out)
        self._publish(out.outgoing, self._notices.due())
        published = self._now()  # confirmed: a later `ReleaseLost` must be about after this
        for task in out.released:
            task.published = published
        # Only a queued head needs the mark (to know on takeover whether its release went
        # out), and a head becomes queued only in a batch that publishes its release.
        marks = {p: (self._held[p].epoch, self._batches) for p in out.releasing}
        if marks:
            self._stored(lambda: self._seq.confirm(marks))
        return parked, partial(self._count, size, seen, dossiers)

    def _ack(self, tags: list[int]) -> None:
        """Acknowledge a handled batch: at once, unless older messages wait in the buffer."""
        if not tags:
            return
        last = max(tags)
        if all(d.delivery_tag > last for d in self._buffer):
            self._consume_ch.ack(last, multiple=True)
            return
        for tag in tags:  # a light offices' batch taken past a heavy office's messages
            self._consume_ch.ack(tag)

    def _record(
        self, out: Collector, part: str, dossier: core.Dossier, effects: list[core.Effect]
    ) -> None:
        """Add a message's effects; one that changed nothing creates no dossier."""
        if effects or dossier.tasks or dossier.saved is not None:
            out.add(dossier, part, self._held[part].epoch, effects)

    def _count(self, size: int, seen: list[_Seen], dossiers: dict[str, core.Dossier]) -> None:
        """Feed the metrics once a batch is acknowledged (a failed one is counted by its replay)."""
        for dossier, before, effects in seen:
            self._metrics.observe(dossier, before.kind if before else None, effects)
        self._metrics.batch_size.observe(size)
        self._tally.update(dossiers.values())

    def _stored(self, step: Callable[[], T]) -> T:
        """Run a store step, waiting through a short database outage in place.

        Every step of a batch is idempotent, so it is simply done again; the waits go
        through the connection so heartbeats flow and the partition stays ours. After
        `STORE_WAIT_S` the error propagates: the owner reconnects and a standby may
        take the partition.
        """
        deadline = time.monotonic() + STORE_WAIT_S
        wait = 0.2
        while True:
            try:
                return self._pumped(step)
            except StoreUnavailable as exc:
                if time.monotonic() + wait > deadline:
                    raise
                log.warning("sequencer.store_unavailable", error=str(exc), retry_in=wait)
                self._conn.sleep(wait)
                wait = min(wait * 2, 5.0)
                self._still_ours()

    def _pumped(self, step: Callable[[], T]) -> T:
        """Run a store step in the owner's store thread while this thread keeps the broker
        connection alive (heartbeats; deliveries go to the buffer for later batches).

        A slow store step (a server scanning a big collection, a long bulk write) would
        otherwise hold the thread past the heartbeat timeout: the broker closes the
        connection, a standby takes the partition, meets the same slow step and loses it
        in turn, and no owner gets a batch through.
        """
        future = self._store_thread.submit(step)
        future.add_done_callback(self._wake)
        while not future.done():
            self._conn.pump(PUMP_S)
        return future.result()

    def _wake(self, _done: object) -> None:
        """From the store thread: end the owner's current pump (a broken connection has
        nothing to wake; the owner finds it broken itself)."""
        with contextlib.suppress(BrokerError):
            self._conn.call_threadsafe(_nothing)

    def _still_ours(self) -> None:
        """Raise Fenced if a newer owner took one of our partitions (checked after a failure)."""
        try:
            docs = self._pumped(lambda: self._seq.partitions(self._held))
        except StoreUnavailable:
            return  # still down: the retry will tell
        for part, held in self._held.items():
            if int(docs.get(part, {}).get("epoch", 0)) != held.epoch:
                raise Fenced(f"partition {part} has a newer owner")

    # -- messages of another partition ------------------------------------------------
    def _misrouted(self, item: _Item) -> bool:
        """Whether a readable message belongs to another partition than the one it came on.

        Every publisher of this version routes by the partition header, so this is a
        message without it (from an earlier version, through the control exchange's hash)
        or one a connector's event sent with another work message's header. Only the
        dossier's own partition may handle it: two owners would number its tasks apart.
        """
        if item.decoded.message is None:
            return False  # dropped wherever it lands
        home = topology.partition_of(item.decoded.key, self._topo.partitions)
        if home == topology.partition_index(item.part):
            return False
        if FORWARDED_HEADER in item.delivery.headers:
            # Forwarded here by an owner that computes partitions otherwise: dispatchers
            # disagree on DOSSIERFLOW_PARTITIONS. Handled here rather than sent round.
            log.error("control.misrouted_again", key=item.decoded.key, came_on=item.part)
            return False
        return True

    def _forward(self, items: list[_Item]) -> set[int]:
        """Send misrouted messages on to their partitions, confirmed before the batch's ack.

        They go out under this owner's login, so what the receiving owner must know of the
        original sender (the exchange it was published to, its login, the broker's x-death)
        travels in the `forwarded` header, which an owner believes only from a login that
        may send commands (`_unforwarded`). Returns the delivery tags of what the broker
        refused, which are parked (rejected), not acknowledged.
        """
        forwards = []
        for item in items:
            d = item.delivery
            home = topology.partition_of(item.decoded.key, self._topo.partitions)
            headers = {k: v for k, v in d.headers.items() if not k.startswith("x-")}
            facts: dict[str, Any] = {"exchange": d.exchange, "user_id": d.user_id}
            if d.headers.get("x-death"):
                facts["x-death"] = d.headers["x-death"]
            headers[topology.PARTITION_HEADER] = str(home)
            headers[FORWARDED_HEADER] = facts
            forwards.append(Forward(topology.PARTITIONS_EXCHANGE, d, headers))
            log.info(
                "control.forwarded",
                key=item.decoded.key,
                message_id=d.message_id,
                came_on=item.part,
                to=topology.partition_queue(home),
            )
        self._publisher.forward(forwards)
        try:
            if self._publisher.wait():
                raise Unroutable("a message sent with forwards found no queue")
        except PublishNotConfirmed as exc:
            # The home partition is full (its byte limit). Giving the message back would
            # loop while partitions full of each other's messages wait on each other, so
            # it is parked for ops, as a message this owner cannot handle is. Only a
            # connector of an earlier version, or one that is not ours, sends events that
            # need forwarding; the sweeper announces again what a parked command was for.
            refused = [f.delivery.delivery_tag for f in exc.refused if isinstance(f, Forward)]
            log.error("control.forward_refused", count=len(refused))
            for tag in refused:
                self._consume_ch.reject(tag, requeue=False)
            return set(refused)
        return set()

    def _unforwarded(self, delivery: Delivery) -> Delivery:
        """A message another owner forwarded, as its original sender sent it.

        Marked redelivered: a forwarded command may arrive after later ones of its dossier
        and is placed by its task id (`core._place_late`).
        """
        facts = delivery.headers.get(FORWARDED_HEADER)
        if delivery.exchange != topology.PARTITIONS_EXCHANGE or not isinstance(facts, Mapping):
            return delivery
        if self._senders.connector_prefix and delivery.user_id not in self._senders.commanders:
            return delivery  # not from an owner: judged as what it is
        headers = {k: v for k, v in delivery.headers.items() if k != FORWARDED_HEADER}
        if facts.get("x-death"):
            headers["x-death"] = facts["x-death"]
        return replace(
            delivery,
            exchange=header_text(facts.get("exchange")),
            user_id=header_text(facts.get("user_id")),
            headers=headers,
            redelivered=True,
        )

    def _decode(self, delivery: Delivery) -> Inbound:
        """Decode; a message from a sender that may not send it is dropped (see `senders`)."""
        delivery = self._unforwarded(delivery)
        limit = self._cfg.max_message_bytes
        if limit and len(delivery.body) > limit:
            decoded = self._oversized(delivery, limit)
        else:
            decoded = inbound(
                delivery.body,
                delivery.message_id,
                delivery.routing_key,
                death_of(delivery),
                delivery.redelivered,
            )
        if decoded.message is None:
            return decoded
        dead = delivery.death is not None
        why = self._senders.refusal(
            delivery.exchange, delivery.user_id, decoded.office, decoded.message, dead
        )
        return replace(decoded, message=None, problem=why) if why else decoded

    @staticmethod
    def _oversized(delivery: Delivery, limit: int) -> Inbound:
        """A message over the size limit is not decoded. A work message the broker
        dead-lettered still becomes an unreadable message of its dossier (with its first
        bytes, as an instruction keeps them), so it is not lost without a word; anything
        else is dropped."""
        office, _, dossier = delivery.routing_key.partition(".")
        why = f"message of {len(delivery.body)} bytes is over the limit of {limit}"
        death = death_of(delivery)
        if death is None or not (valid_id(office) and valid_id(dossier)):
            return Inbound(office, dossier, None, why)
        raw = delivery.body[:RAW_KEEP_BYTES]
        return Inbound(
            office,
            dossier,
            Unreadable(
                delivery.message_id,
                death.reason,
                death.queue,
                raw,
                redelivered=delivery.redelivered,
                run=death.run,
            ),
        )

    def _take_new(self, parts: set[str], now: datetime) -> None:
        """A first delivery on a partition means the broker made this owner its active one."""
        for part in sorted(parts - self._held.keys()):
            epoch = self._stored(partial(self._seq.acquire, part, self._cfg.name, now))
            settle = time.monotonic() + SETTLE_S if epoch > 1 else 0.0
            self._held[part] = _Held(epoch, settle_until=settle)
            self._tally.partitions = len(self._held)
            log.info("partition.acquired", partition=part, epoch=epoch, owner=self._cfg.name)

    def _dossiers(
        self, items: list[_Item], part_docs: dict[str, Any], out: Collector
    ) -> dict[str, core.Dossier]:
        """The dossiers of a batch: kept in memory, or loaded (and repaired) on first use."""
        found: dict[str, core.Dossier] = {}
        missing: dict[str, bool] = {}
        part_of: dict[str, str] = {}
        for item in items:
            key = item.decoded.key
            if item.decoded.message is None or key in found:
                continue
            cached = self._held[item.part].dossiers.get(key)
            # A release reported lost: its dossier is read whatever its document says.
            lost = isinstance(item.decoded.message, ReleaseLost)
            if cached is not None:
                found[key] = cached
            else:
                missing[key] = missing.get(key, False) or item.delivery.redelivered or lost
                part_of[key] = item.part
        if missing:
            docs = {k: part_docs.get(p, {}) for k, p in part_of.items()}
            loaded, repairs = self._stored(lambda: load_dossiers(self._seq, missing, docs, out.now))
            for key, dossier in loaded.items():
                self._held[part_of[key]].dossiers[key] = dossier
                found[key] = dossier
            for key, effects in repairs.items():
                log.info("sequencer.republish", key=key, task_id=loaded[key].active)
                out.add(loaded[key], part_of[key], self._held[part_of[key]].epoch, effects)
        return found

    def _recheck(self, items: list[_Item], dossiers: dict[str, core.Dossier]) -> dict[int, Message]:
        """Look up, once per batch, the tasks the rules cannot judge from memory.

        A command that may have been seen already (republished, redelivered), and a
        dead letter about a task that is not open here (finished, or never ours). The
        answer replaces the message of each such delivery (by its position in the batch).
        A release reported lost is looked up too: if the store says otherwise than memory
        (an owner that lost the partition wrote the task since), the dossier is read
        again (`_reload_stale`) before the rules judge the report.
        """
        ask = self._to_look_up(items, dossiers)
        if not ask:
            return {}
        docs = self._stored(lambda: self._seq.tasks(set(ask.values())))
        found: dict[int, Message] = {}

        for n, task_id in ask.items():
            where, msg = items[n].decoded, items[n].decoded.message
            doc = docs.get(task_id)
            ours = doc is not None and (doc["office"], doc["dossier"]) == (
                where.office,
                where.dossier,
            )
            if isinstance(msg, Submitted):
                if doc is not None and ours:
                    accepted = doc["status"] != TaskStatus.SUBMITTED
                    found[n] = Submitted(task_id, doc["kind"], doc.get("payload") or {},
                                         recheck=True, accepted=accepted)  # fmt: skip
                    if doc["status"] in OPEN_STATUSES:
                        self._stale.add(where.key)
            elif isinstance(msg, DeadLettered | Unreadable):
                found[n] = replace(msg, orphan=not ours)
            elif isinstance(msg, ReleaseLost) and ours and _differs(dossiers[where.key], doc):
                self._stale.add(where.key)  # the store differs: read the dossier again
        return found

    def _to_look_up(self, items: list[_Item], dossiers: dict[str, core.Dossier]) -> dict[int, str]:
        """The task ids `_recheck` reads, by position in the batch."""
        ask: dict[int, str] = {}
        clock = time.monotonic()
        for n, item in enumerate(items):
            msg, key = item.decoded.message, item.decoded.key
            # While settling, a first delivery may name a task accepted from its note.
            settling = clock < self._held[item.part].settle_until
            if isinstance(msg, Submitted) and not msg.recheck and not settling:
                continue
            task_id = _task_of(msg)
            if task_id and (task_id not in dossiers[key].tasks or isinstance(msg, ReleaseLost)):
                ask[n] = task_id
        return ask

    def _resolved(self, msg: Message, rechecked: bool, dossier: core.Dossier) -> Message | None:
        """The message to apply, None for a submission that is no new one."""
        if rechecked or not isinstance(msg, Submitted):
            return msg
        if msg.task_id in self._from_notes:
            return None  # accepted from its note before its command came (`_accept_earlier`)
        if msg.recheck and msg.task_id not in dossier.tasks:
            log.error("sequencer.unknown_task", task_id=msg.task_id, key=dossier.key)
            return None
        return msg

    def _late_submissions(self, items: list[_Item]) -> dict[str, str]:
        """Dossiers with a submission that may be late: key to the batch's newest one."""
        clock = time.monotonic()
        latest: dict[str, str] = {}
        for item in items:
            msg = item.decoded.message
            if not isinstance(msg, Submitted):
                continue
            late = item.delivery.redelivered or msg.recheck
            if late or clock < self._held[item.part].settle_until:
                key = item.decoded.key
                latest[key] = max(latest.get(key, ""), msg.task_id)
        return latest

    def _accept_earlier(
        self,
        items: list[_Item],
        dossiers: dict[str, core.Dossier],
        now: datetime,
        out: Collector,
    ) -> None:
        """Accept first the unaccepted tasks submitted before a submission that may be late.

        A quorum queue does not promise the order in which it delivers again what an
        earlier owner held (the commands it had taken but not acknowledged come back
        scrambled, while commands published since then may come first), and the sweeper
        announces a command that was never confirmed after later ones. So for a
        submission delivered again or republished, and for every submission during the
        first `SETTLE_S` after taking a partition over, the owner reads the dossier's notes
        of unaccepted tasks (`submissions`, written before each task) and accepts the
        earlier ones first, in submission order, from their stored documents. One read of
        that small collection per such batch; none in the steady state.
        """
        clock = time.monotonic()
        latest = self._late_submissions(items)
        if not latest:
            return
        notes = self._stored(lambda: self._seq.unaccepted(latest))
        earlier = {
            key: [t for t in ids if t < latest[key] and t not in dossiers[key].tasks]
            for key, ids in notes.items()
            if key in latest
        }
        wanted = {t for ids in earlier.values() for t in ids}
        if not wanted:
            return
        docs = self._stored(lambda: self._seq.tasks(wanted))
        part_of = {item.decoded.key: item.part for item in items}
        for key, ids in earlier.items():
            d = dossiers[key]
            for task_id in ids:
                doc = docs.get(task_id)
                if doc is None or doc.get("status") != TaskStatus.SUBMITTED:
                    continue  # gone, or accepted meanwhile (then `_reload_stale` reads it)
                if (doc.get("office"), doc.get("dossier")) != (d.office, d.dossier):
                    continue
                msg = Submitted(task_id, doc["kind"], doc.get("payload") or {}, recheck=True)
                self._record(out, part_of[key], d, core.step(d, msg, now, self._rules))
                self._from_notes[task_id] = clock
                log.info("sequencer.accepted_earlier", key=key, task_id=task_id)
        for task_id in [t for t, at in self._from_notes.items() if at < clock - 600]:
            del self._from_notes[task_id]

    def _reload_stale(
        self, items: list[_Item], dossiers: dict[str, core.Dossier], out: Collector
    ) -> None:
        """Load again the dossiers whose stored tasks this owner did not know of.

        An owner that lost its partition can still land a write after its successor
        loaded a dossier (its own epoch check came first): an accepted task the
        successor's memory lacks. Found by the lookup of a redelivered command, the
        dossier is read again so that task keeps its place and number.
        """
        stale, self._stale = self._stale, set()
        part_of = {i.decoded.key: i.part for i in items if i.decoded.key in stale}
        if not part_of:
            return
        part_docs = self._stored(lambda: self._seq.partitions(set(part_of.values())))
        docs = {k: part_docs.get(p, {}) for k, p in part_of.items()}
        missing = dict.fromkeys(part_of, True)
        loaded, repairs = self._stored(lambda: load_dossiers(self._seq, missing, docs, out.now))
        for key, dossier in loaded.items():
            log.warning("sequencer.reloaded", key=key, reason="read again from the store")
            _keep_published(dossiers.get(key), dossier)
            self._held[part_of[key]].dossiers[key] = dossier
            dossiers[key] = dossier
            if key in repairs:
                out.add(dossier, part_of[key], self._held[part_of[key]].epoch, repairs[key])

    # -- publishing ---------------------------------------------------------------------
    def _publish(self, outgoing: list[Outgoing], notice: bytes | None = None) -> None:
        """Publish the batch's releases and timers; declare a work queue that was missing.

        The batch's change notice goes first (after the write: readers find what it names).
        """
        if notice is not None:
            self._publisher.notify(topology.CHANGES_EXCHANGE, notice)
        if outgoing:
            self._publish_work(outgoing)  # waits for the notice's confirm too
        elif notice is not None:
            self._publisher.wait()
        if notice is not None:
            self._notices.heard(not self._publisher.unheard())

    def _publish_work(self, outgoing: list[Outgoing]) -> None:
        offices = {o.envelope.office for o in outgoing if o.exchange == topology.WORK_EXCHANGE}
        for office in offices - self._declared:
            self._declare_ch.declare_work_queue(office, self._topo)
            self._declared.add(office)
        returned = self._publisher.publish_all(outgoing)
        if returned:
            # A work queue deleted behind our back: declare it again and publish once more.
            for office in {o.envelope.office for o in returned}:
                self._declare_ch.declare_work_queue(office, self._topo)
            if self._publisher.publish_all(returned):
                raise Unroutable(f"{len(returned)} message(s) found no queue")


def _differs(d: core.Dossier, doc: Mapping[str, Any] | None) -> bool:
    """Whether a stored task's state is not the one this owner keeps of it in memory."""
    if doc is None:
        return False
    known = d.tasks.get(str(doc["_id"]))
    stored = (str(doc.get("status")), int(doc.get("run", 0)))
    return known is None or (known.status.value, known.run) != stored


def _keep_published(before: core.Dossier | None, after: core.Dossier) -> None:
    """Carry over when this owner published each release that is still the current one."""
    if before is None:
        return
    for task in after.tasks.values():
        was = before.tasks.get(task.id)
        if was is not None and was.run == task.run and task.published is None:
            task.published = was.published


def _task_of(msg: Message | None) -> str:
    """The task id a message names (an unreadable one: its message id)."""
    if isinstance(msg, Unreadable):
        return msg.message_id
    return msg.task_id if msg is not None else ""


def _nothing() -> None:
    """Wakes the owner's pump when a store step is done."""
