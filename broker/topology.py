"""Every exchange and queue of dossierflow: names and arguments, each with its reason.

Declaring is idempotent: every process declares what it uses at start-up with the same
arguments. Changing an argument of an existing queue is refused by RabbitMQ
(PRECONDITION_FAILED); in production change such limits with a policy instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

# Commands and events of all dossiers reach their dossier's partition through the
# partitions exchange: a headers exchange on the `partition` header, which every publisher
# computes itself from the dossier key (`partition_of`, a pure function of the key and the
# partition count). The broker keeps no state for this routing, so a broker restart cannot
# move a dossier to another partition, and two owners never number the same dossier.
# Work messages carry the header too, and so do what comes of them: a connector's events
# copy it from the work message, dead letters and expired retry timers keep it.
PARTITIONS_EXCHANGE = "dossierflow.partitions"
PARTITION_HEADER = "partition"
# The run a work message was released under: its dead letter then says which run failed,
# even when its bytes are no envelope (dispatcher/senders.py, death_of).
RUN_HEADER = "run"

# Before the partitions exchange, consistent hashing on the routing key sent everything of a
# dossier to its partition. Its ring is broker state rebuilt at each start of the broker
# application, and a dossier could come back mapped to another partition (rabbitmq-server
# #3386, rabbitmq-consistent-hash-exchange #32/#45/#46); the chaos run found tasks numbered
# out of order by two owners that way. It stays as the partitions exchange's alternate
# exchange, for a message without the header (one published by an older version during an
# upgrade): it still reaches some partition, whose owner forwards it to the right one.
CONTROL_EXCHANGE = "dossierflow.control"
CONTROL_EXCHANGE_TYPE = "x-consistent-hash"
# Ring points per partition binding: with one point per queue the spread over a few
# partitions is very uneven; tens of points even it out.
PARTITION_WEIGHT = 20

# Work released by the sequencer, routed to the office's queue by the `office.*` pattern.
WORK_EXCHANGE = "dossierflow.work"
# What the sequencer changed, one notice per batch (the ids of the tasks and dossiers it
# wrote), for readers that keep a copy, such as the monitoring page: they read again only
# what changed instead of scanning every task. Notices are transient and best effort; a
# reader that was not listening reads everything again.
CHANGES_EXCHANGE = "dossierflow.changes"

# Result events of the connectors (started, done, failed), bound exchange-to-exchange
# into the control exchange with `#`. Connectors may write here and nowhere else on the
# control side: the topic permission of office O's login allows only routing keys
# `O.<dossier>`, so the broker refuses an event about another office's dossier, and the
# dispatcher knows that whatever came through here is a connector's event, never a
# command, timer or dead letter (deploy/rabbitmq/office-user.sh, dispatcher/senders.py).
EVENTS_EXCHANGE = "dossierflow.events"

# Work that failed for good or could not be handled: fed back into the control exchange

# (exchange-to-exchange binding) so the dossier's own partition records the failure.
DEAD_EXCHANGE = "dossierflow.dead"


def retry_exchange(delay_s: int) -> str:
    """Exchange (fanout) and queue of the delayed retries waiting `delay_s` seconds.

    Fixed-delay queues keep expiry in FIFO order (RabbitMQ expires only at the head); an
    expired message dead-letters into the partitions exchange with its `partition` header,
    so the retry comes back through the dossier's own partition. (The `dossierflow.retry.*`
    queues of earlier versions dead-letter into the control exchange; see `CONTROL_EXCHANGE`.)
    """
    return f"dossierflow.delay.{delay_s}s"


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping and Veach, 2014): `key`'s bucket among `buckets`.

    Deterministic, evenly spread, and on growing from n to n+1 buckets only about 1/(n+1)
    of the keys move, all of them to the new bucket.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) % 2**64
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def partition_of(key: str, partitions: int) -> int:
    """The partition of a dossier key (`office.dossier`): the same on every host and run."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), partitions)


def partition_headers(key: str, partitions: int) -> dict[str, str]:
    """The header that routes a message of dossier `key` to its partition."""
    return {PARTITION_HEADER: str(partition_of(key, partitions))}


def partition_binding(index: int) -> dict[str, str]:
    """The partitions exchange's binding arguments of partition `index`."""
    return {"x-match": "all", PARTITION_HEADER: str(index)}


def partition_index(queue: str) -> int:
    """The index of a partition queue (`partition_queue`'s inverse)."""
    return int(queue.rsplit(".p", 1)[1])


def retry_arguments(delay_s: int, replicas: int = 0) -> dict[str, Any]:
    """Arguments of a delayed-retry queue.

    Classic on a single node. With `replicas` set (a cluster) it is a quorum queue like
    the others: a durable classic queue lives on one node, and while that node is down
    every declare of it fails (NOT_FOUND, home node down), so no dispatcher could start
    or reconnect. Quorum queues expire messages at the head too (RabbitMQ >= 3.10).
    """
    if not replicas:
        return {
            "x-queue-type": "classic",
            "x-message-ttl": delay_s * 1000,
            "x-dead-letter-exchange": PARTITIONS_EXCHANGE,
        }
    return {
        **quorum_arguments(replicas),
        "x-message-ttl": delay_s * 1000,
        "x-dead-letter-exchange": PARTITIONS_EXCHANGE,
        # An expired retry must reach its partition even if a node goes down meanwhile.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def partition_queue(index: int) -> str:
    """Name of control partition `index`."""
    return f"dossierflow.control.p{index:02d}"


def work_queue(office: str) -> str:
    """Name of the work queue of one office (per-office broker users reach only this)."""
    return f"dossierflow.work.{office}"


def work_binding(office: str) -> str:
    """Binding pattern that brings an office's work (`office.dossier`) to its queue."""
    return f"{office}.*"


# Where a control message goes that the sequencer cannot handle (a bug, or a message
# that outlived CONTROL_DELIVERY_LIMIT crash-restarts): kept for ops, never dropped.
PARKED_EXCHANGE = "dossierflow.parked"
PARKED_QUEUE = "dossierflow.control.parked"
# Explicit and high: RabbitMQ 4.x gives quorum queues a default limit of 20 and drops
# what exceeds it when no dead-letter exchange is set; a database outage that makes
# dispatchers restart must never cost a control message.
CONTROL_DELIVERY_LIMIT = 1000
# Bytes of ready messages a partition holds before the broker refuses (nacks) publishes to
# it: a flood, or a dispatcher that is down, fills the broker's memory no further. The
# publisher sees the nack (the API answers 503, a connector sends its event again later,
# the sweeper announces a stored task later). RabbitMQ counts ready messages only, and a
# quorum queue checks the limit before it takes a message, so a partition can end up one
# message (at most the broker's `max_message_size`) over it; a classic queue refuses the
# message that would cross it. Neither reading is relied on.
PARTITION_MAX_BYTES = 64 * 1024 * 1024


def quorum_arguments(replicas: int = 0) -> dict[str, Any]:
    """Arguments every quorum queue of ours has: its type, and how many replicas.

    `replicas` 0 leaves the count to RabbitMQ (every node up to its `quorum_cluster_size`,
    3 by default); a number makes it explicit (3 on a three-node cluster: one node may go
    down and every queue keeps its majority). Like every argument, it cannot change on
    an existing queue: RabbitMQ 3.10 refuses the redeclare (PRECONDITION_FAILED, checked),
    so add replicas with `rabbitmq-queues add_member` or `grow` instead.
    """
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if replicas:
        args["x-quorum-initial-group-size"] = replicas
    return args


def partition_arguments(replicas: int = 0, max_bytes: int = PARTITION_MAX_BYTES) -> dict[str, Any]:
    """Arguments of a control partition queue."""
    return {
        # Replicated and durable: a lost command would leave a task stored but never run.
        **quorum_arguments(replicas),
        # One active consumer per partition keeps one writer per dossier; the others are
        # hot standbys that RabbitMQ activates when the active one goes away.
        "x-single-active-consumer": True,
        "x-delivery-limit": CONTROL_DELIVERY_LIMIT,
        "x-dead-letter-exchange": PARKED_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        # Also what at-least-once dead-lettering needs; with the byte limit it is the
        # partition's back-pressure (see PARTITION_MAX_BYTES).
        "x-overflow": "reject-publish",
        "x-max-length-bytes": max_bytes,
    }


def work_arguments(delivery_limit: int, replicas: int = 0) -> dict[str, Any]:
    """Arguments of an office work queue."""
    return {
        **quorum_arguments(replicas),
        # Explicit on purpose: RabbitMQ 3.x has no limit by default and 4.x defaults to
        # 20. A message that keeps killing connectors is dead-lettered after this many.
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_EXCHANGE,
        # At-least-once dead-lettering (RabbitMQ >= 3.10) so a dead-lettered task cannot
        # vanish between the work queue and the control partition; it needs reject-publish.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


@dataclass(frozen=True)
class Topology:
    """The shape of the broker for one deployment."""

    partitions: int = 8
    delivery_limit: int = 5
    retry_delays: tuple[int, ...] = (10, 60, 300, 1800)
    quorum_replicas: int = 0  # 0: RabbitMQ's default (see quorum_arguments)
    partition_max_bytes: int = PARTITION_MAX_BYTES

    def partition_queues(self) -> list[str]:
        """All control partition queue names."""
        return [partition_queue(i) for i in range(self.partitions)]

    def route(self, key: str) -> dict[str, str]:
        """The headers of a message about dossier `key` (`office.dossier`): its partition."""
        return partition_headers(key, self.partitions)
