"""What the API and the page do, behind access control: one place for both front ends.

Reads are `reads.Reads` (`Service.reads`); submissions and the actions (restart, cancel,
resolve) are here. The broker client is not thread-safe and FastAPI runs sync endpoints in
a thread pool, so each thread gets a client of its own from `ClientPool`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from broker.errors import BrokerError, PublishNotConfirmed
from dispatcher.actions import role_refusal, state_refusal
from dispatcher.api.admission import Admission
from dispatcher.api.auth import ACTORS, SUBMITTERS, Principal, authenticate, authenticate_session
from dispatcher.api.problems import Problem
from dispatcher.api.reads import Reads
from dispatcher.client import Client, canonical_hash
from dispatcher.errors import ActionRefused, NotAnnounced, Overloaded, UnknownTask
from store import ActionRecord, Store, TaskRecord
from store.sessions import Sessions
from workers.errors import InvalidSubmission
from workers.vocabulary import ActionType

IDEMPOTENCY_WAIT_S = 10.0  # how long a retry waits for a concurrent first attempt


class ClientPool:
    """One broker client per thread, all closed together."""

    def __init__(self, factory: Callable[[], Client]) -> None:
        self._factory = factory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Client] = []

    def get(self) -> Client:
        """This thread's client, opened on first use."""
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._factory()
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def discard(self) -> None:
        """Forget this thread's client after a broker error; the next call opens a new one."""
        client: Client | None = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._lock:
                self._all.remove(client)
            with contextlib.suppress(BrokerError):
                client.close()

    def close(self) -> None:
        """Close every client."""
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            with contextlib.suppress(BrokerError):
                client.close()


BEHIND = "the dispatcher is behind (a control partition is full); try again later"


class Busy(Problem):
    """503: the task is stored, but the broker refused its announcement (slow down)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            503,
            "unavailable",
            f"{BEHIND}. Task {task_id} is stored and will run once the dispatcher catches "
            "up: do not submit it again (a retry with the same Idempotency-Key answers "
            "with it)",
        )
        self.task_id = task_id


def fingerprint(dossier: str, kind: str, payload: Mapping[str, Any]) -> str:
    """What makes two submissions the same request."""
    return canonical_hash(dossier, kind, payload)


def allowed(who: Principal, task: TaskRecord, action: ActionType) -> bool:
    """Whether the user may take the action now (the rules `Service.act` applies)."""
    if who.role not in ACTORS:
        return False
    return state_refusal(task, action) is None and role_refusal(task, action, who.role) is None


class Service:
    """Reads, submissions and actions of one user, with the access rules applied."""

    def __init__(
        self,
        store: Store,
        clients: ClientPool,
        admission: Admission,
        action_wait_s: float = 10.0,
    ) -> None:
        self.store = store
        self.admission = admission
        self.monitoring = store.monitoring
        self.reads = Reads(store, self.monitoring)
        self.tokens = store.tokens
        self.keys = store.idempotency
        self.clients = clients
        self.action_wait_s = action_wait_s

    def authenticate(self, token: str | None) -> Principal:
        """The user of a token, or 401."""
        return authenticate(self.store, self.tokens, token)

    def authenticate_session(self, sessions: Sessions, session_id: str | None) -> Principal:
        """The user of a page session, or 401."""
        return authenticate_session(self.store, self.tokens, sessions, session_id)

    def set_language(self, who: Principal, language: str) -> None:
        """The user's own language ("": the browser's, else the office's)."""
        self.store.users.save(replace(who.user, language=language))

    def submit(
        self, who: Principal, dossier: str, kind: str, payload: dict[str, Any], key: str | None
    ) -> tuple[str, bool]:
        """Submit for the user's office; (task id, whether it is new)."""
        who.require(SUBMITTERS, "submit tasks")
        office = who.user.office
        if office is None:
            raise Problem(403, "forbidden", "the user belongs to no office")
        if key is None:
            self.admission.admit(office, 1)
            return self._submit(office, dossier, kind, payload), True
        stamp = fingerprint(dossier, kind, payload)
        earlier = self.keys.reserve(office, key, stamp)
        if earlier is None:
            try:
                self.admission.admit(office, 1)  # a retry answered from its key costs nothing
                task_id = self._submit(office, dossier, kind, payload)
            except Busy as exc:
                # Stored: the key answers with it, so a retry with the key stores nothing.
                self.keys.complete(office, key, exc.task_id)
                raise
            except BaseException:
                self.keys.release(office, key)
                raise
            self.keys.complete(office, key, task_id)
            return task_id, True
        return self._replay(office, key, stamp, earlier.fingerprint), False

    def _replay(self, office: str, key: str, stamp: str, earlier: str) -> str:
        if earlier != stamp:
            # 409: the request is well formed; it conflicts with what the key already did.
            raise Problem(409, "idempotency-key-reused", "the key was used for another request")
        deadline = time.monotonic() + IDEMPOTENCY_WAIT_S
        while time.monotonic() < deadline:
            found = self.keys.get(office, key)
            if found is None:
                break
            if found.task_id is not None:
                return found.task_id
            time.sleep(0.05)
        raise Problem(409, "idempotency-key-reused", "the first request is still in progress")

    def _submit(self, office: str, dossier: str, kind: str, payload: dict[str, Any]) -> str:
        try:
            return self.clients.get().submit(office, dossier, kind, payload)
        except InvalidSubmission as exc:
            raise Problem(422, "invalid-payload", str(exc)) from exc
        except Overloaded as exc:
            # The broker refused the announcement: the caller must slow down (503 with
            # Retry-After), and must not submit the stored task again.
            raise Busy(exc.task_id) from exc
        except NotAnnounced as exc:
            # Stored, so it will run (the sweeper announces it): the caller must not
            # submit it again, so this is a success with the task's id.
            self.clients.discard()
            return exc.task_id
        except BrokerError as exc:
            self.clients.discard()
            raise Problem(503, "unavailable", "the broker is unreachable") from exc

    def act(
        self, who: Principal, task_id: str, action: ActionType, payload: dict[str, Any] | None
    ) -> ActionRecord:
        """Restart, cancel or resolve a task the user may see and act on."""
        task = self.reads.task(who, task_id)
        who.require(ACTORS, "act on tasks")
        reason = state_refusal(task, action)
        if reason is not None:
            raise Problem(409, "action-refused", reason)
        reason = role_refusal(task, action, who.role)
        if reason is not None:
            raise Problem(403, "forbidden", reason)
        client = self.clients.get()
        wait = self.action_wait_s
        try:
            if action is ActionType.RESTART:
                return client.restart(
                    task.id, payload=payload, role=who.role, by=who.user.id, wait_s=wait
                )
            method = client.cancel if action is ActionType.CANCEL else client.resolve
            return method(task.id, role=who.role, by=who.user.id, wait_s=wait)
        except InvalidSubmission as exc:
            raise Problem(422, "invalid-payload", str(exc)) from exc
        except (ActionRefused, UnknownTask) as exc:
            raise Problem(409, "action-refused", str(exc)) from exc
        except PublishNotConfirmed as exc:
            raise Problem(503, "unavailable", BEHIND) from exc
        except BrokerError as exc:
            self.clients.discard()
            raise Problem(503, "unavailable", "the broker is unreachable") from exc
