"""Broker addresses: a setting may name every node of a cluster (no I/O here).

`DOSSIERFLOW_AMQP_URL` and `DOSSIERFLOW_RABBITMQ_API` take one URL or several, separated
by commas or semicolons (`amqp://u:p@node1:5672/v,amqp://u:p@node2:5672/v`). A client
tries them in turn, starting at a different one per connection so the connections of
many processes spread over the nodes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

_SEPARATORS = re.compile(r"[,;]\s*")


def split_urls(value: str) -> list[str]:
    """The URLs a setting lists, in order; at least one (the value itself when empty)."""
    urls = [u.strip() for u in _SEPARATORS.split(value) if u.strip()]
    return urls or [value]


def join_urls(urls: Sequence[str]) -> str:
    """One setting value listing `urls`."""
    return ",".join(urls)


def map_urls(value: str, change: Callable[[str], str]) -> str:
    """The setting with `change` applied to each URL it lists."""
    return join_urls([change(u) for u in split_urls(value)])


def rotated(urls: Sequence[str], start: int | None = None) -> list[str]:
    """`urls` starting at `start` (random when None) and wrapping around.

    Every node stays in the list, so a client still reaches the cluster when the one it
    starts with is down; only the first choice differs from connection to connection.
    """
    if not urls:
        return []
    first = random.randrange(len(urls)) if start is None else start % len(urls)
    return [*urls[first:], *urls[:first]]
