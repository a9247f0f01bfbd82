"""The sequencer's change notices, for the page's copies: what to read again, by office.

A daemon thread consumes an exclusive, server-named queue bound to
`topology.CHANGES_EXCHANGE` and collects the task ids and dossiers each notice names.
The page then reads only those documents again, by `_id`, instead of scanning every task
of the office (seconds at 10,000 tasks on a server that cannot use indexes).

Notices are best effort. Whenever the feed (re)connects its `generation` moves on: what
was published while nobody listened is unknown, so every copy older than the generation
is read whole again. `live` is False while it is disconnected; readers then fall back to
reading whole copies on a timer. A sequencer that found nobody listening sends no notices,
only, every few seconds while things change, a probe (`resync`) that does the same as a
reconnection here (`dispatcher.batchwrite.Notices`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from broker import topology
from broker.errors import BrokerError, ChannelRefused
from broker.rabbitmq import Connection

_log = logging.getLogger(__name__)

# The queue's bound (its oldest notices are dropped beyond it). The thread takes notices
# as they come, so it only fills while the process hangs; the page's periodic whole read
# then puts right what the dropped notices named.
MAX_NOTICES = 100_000


@dataclass
class Pending:
    """What changed in one office since a reader last took it."""

    tasks: set[str] = field(default_factory=set)
    dossiers: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.dossiers)


class ChangeFeed:
    """Consumes change notices in a thread; `take(office)` hands over what changed there."""

    def __init__(self, amqp_url: str, *, name: str = "dossierflow-api-changes") -> None:
        self._url = amqp_url
        self._name = name
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = defaultdict(Pending)
        self._generation = 0
        self._live = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="page-changes", daemon=True)
        self.notices = 0  # received, for figures and tests

    def start(self, wait_s: float = 10.0) -> ChangeFeed:
        """Start consuming; wait up to `wait_s` for the first connection (not an error)."""
        self._thread.start()
        self._ready.wait(wait_s)
        return self

    @property
    def live(self) -> bool:
        """Whether notices are being received now."""
        return self._live

    @property
    def generation(self) -> int:
        """Moves on at every (re)connection: copies read before it may have missed notices."""
        return self._generation

    def take(self, office: str) -> Pending:
        """What changed in `office` since the last call (and forget it here)."""
        with self._lock:
            return self._pending.pop(office, Pending())

    def mark(self, office: str, task_ids: set[str]) -> None:
        """Note a change this process made itself (an action), as a notice would."""
        with self._lock:
            self._pending[office].tasks.update(task_ids)

    def close(self) -> None:
        """Stop the thread (its connection closes with it)."""
        self._stop.set()
        self._thread.join(10)

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            conn: Connection | None = None
            try:
                conn = Connection.open(self._url, name=self._name, attempts=2)
                ch = conn.channel(confirm=False)
                try:
                    queue = ch.declare_listener(topology.CHANGES_EXCHANGE, max_length=MAX_NOTICES)
                except ChannelRefused as exc:
                    # The API's own login may not declare the exchange (the dispatcher does,
                    # deploy/rabbitmq/service-user.sh); it binds to it as it is.
                    if exc.code != 403:
                        raise
                    ch = conn.channel(confirm=False)
                    queue = ch.declare_listener(
                        topology.CHANGES_EXCHANGE, max_length=MAX_NOTICES, declare=False
                    )
                ch.consume_transient(queue, self._on_notice)
                with self._lock:
                    self._generation += 1
                    self._pending.clear()  # every copy is read whole again anyway
                self._live = True
                self._ready.set()
                delay = 0.5
                while not self._stop.is_set():
                    conn.pump(0.5)
            except BrokerError as exc:
                _log.warning("page change feed down (%s); retrying in %.1f s", exc, delay)
            finally:
                self._live = False
                if conn is not None:
                    conn.close()
            self._ready.set()  # start() stops waiting: the pages fall back to timed reads
            self._stop.wait(delay)
            delay = min(delay * 2, 15.0)

    def _lost(self) -> None:
        with self._lock:
            self._generation += 1
            self._pending.clear()

    def _on_notice(self, body: bytes) -> None:
        try:
            notice = json.loads(body)
            tasks = {str(o): [str(i) for i in ids] for o, ids in notice.get("tasks", {}).items()}
            dossiers = {
                str(o): [str(n) for n in names] for o, names in notice.get("dossiers", {}).items()
            }
        except (ValueError, AttributeError, TypeError):
            _log.warning("page change feed: an unreadable notice; reading everything again")
            self._lost()
            return
        if notice.get("resync"):
            # Sent when a reader appears after nobody listened: what changed is unknown.
            self._lost()
            return
        with self._lock:
            self.notices += 1
            for office, ids in tasks.items():
                self._pending[office].tasks.update(ids)
            for office, names in dossiers.items():
                self._pending[office].dossiers.update(names)
