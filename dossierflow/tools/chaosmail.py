"""The chaos run's mail: the real mailer process, a local SMTP sink, and what it received.

The run gives its offices people (an admin each, dossier managers for some dossiers,
two for a few) so the instructions of the failures are mailed, and runs `dossierflow
reminder mail` under the supervisor against an aiosmtpd sink on a free local port. The
checker then reads the sink's files, never the outbox's word: each kept message names
its envelope recipients (`X-Sink-Rcpt-To`) and its Message-ID, which stands for one
outbox key `instruction:<id>:<user>` (`reminder.render.message_id_for`).
"""

from __future__ import annotations

import email
import email.policy
import random
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dossierflow.tools import chaoscheck as cc
from dossierflow.tools.cluster import Cluster
from reminder.digest import recipients_for
from reminder.render import message_id_for
from reminder.service import fanout_key, instruction_key
from reminder.sink import SmtpSink
from store import Store
from store.records import OfficeRecord, Role, UserRecord
from workers.vocabulary import InstructionStatus, Severity

MAILER = "mailer"
HOST = "127.0.0.1"
PASS_S = 1.0  # the mailer's interval between passes


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def add_people(store: Store, dossiers: Iterable[tuple[str, str]]) -> None:
    """An office record and an admin per office; managers for some dossiers, two for a few.

    A dossier with no manager is mailed to its office's admin, one with two managers to
    both: one instruction then calls for one or two mails.
    """
    managers: dict[str, dict[str, list[str]]] = {}
    for n, (office, dossier) in enumerate(dossiers):
        mine = managers.setdefault(office, {"a": [], "b": []})
        if n % 2 == 0:
            mine["a"].append(dossier)
        if n % 3 == 0:
            mine["b"].append(dossier)
    for office, assigned in managers.items():
        store.offices.save(OfficeRecord(office, f"Accountancy {office}", "Europe/Brussels", "nl"))
        store.users.save(UserRecord(f"admin@{office}", office, Role.ADMIN, f"admin@{office}.test"))
        for letter, names in assigned.items():
            user = f"manager-{letter}@{office}"
            store.users.save(
                UserRecord(user, office, Role.DOSSIER_MANAGER, f"{user}.test", "fr", tuple(names))
            )


@dataclass
class MailerKill:
    """A `SinkWatch` that SIGKILLs the mailer at the next message, before or after keeping it.

    Before: the message is dropped, as if the mailer died before the end of DATA; it must
    come again. After: the sink kept it and the mailer dies without the 250 reply, so its
    outbox entry stays pending and the mail is sent again (the outbox's at-least-once).
    """

    cluster: Cluster
    _mode: str = ""
    _hit: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, mode: str) -> None:
        """Kill at the next message; `mode` is `before` or `after` the sink keeps it."""
        with self._lock:
            self._mode = mode
            self._hit.clear()

    def wait(self, timeout_s: float, *, disarm: bool = True) -> bool:
        """Whether the armed kill happened within `timeout_s`; then disarms it (`disarm`)."""
        hit = self._hit.wait(timeout_s)
        if disarm:
            with self._lock:
                self._mode = ""
        return hit or self._hit.is_set()

    def _fire(self, mode: str) -> bool:
        with self._lock:
            if self._mode != mode:
                return False
            self._mode = ""
        self.cluster.kill(MAILER, signal.SIGKILL)
        self._hit.set()
        return True

    def before_store(self) -> bool:
        """Keep the message unless the kill was armed for before."""
        return not self._fire("before")

    def after_store(self) -> None:
        """Kill now if armed for after."""
        self._fire("after")


class MailSide:
    """The sink and the mailer process of a chaos run."""

    def __init__(self, cluster: Cluster, maildir: Path, support: str) -> None:
        self.cluster = cluster
        self.maildir = maildir
        self.support = support
        self.port = free_port()
        self.kill = MailerKill(cluster)
        self.sink = SmtpSink(HOST, self.port, maildir, watch=self.kill)

    def start(self) -> None:
        """An empty maildir, the sink listening, then the mailer (under the supervisor)."""
        shutil.rmtree(self.maildir, ignore_errors=True)
        self.sink.start()
        env = {
            "DOSSIERFLOW_SMTP_HOST": HOST,
            "DOSSIERFLOW_SMTP_PORT": str(self.port),
            "DOSSIERFLOW_SMTP_SECURITY": "none",
            "DOSSIERFLOW_SMTP_USER": "",
            # The sink answers at once or not at all: a dead mailer's SMTP connection must
            # not hold a new one for long.
            "DOSSIERFLOW_SMTP_TIMEOUT_S": "10",
        }
        args = ("reminder", "mail", "--interval", str(PASS_S))
        self.cluster.start(MAILER, *args, env=env)

    def stop(self) -> None:
        """Stop the sink (after the cluster: a mailer mid-send finishes first)."""
        self.sink.stop()

    def kill_mid_send(
        self, rng: random.Random, provoke: Callable[[], str], timeout_s: float = 15.0
    ) -> str:
        """SIGKILL the mailer at its next message (before or after the sink keeps it).

        Instruction mails come in bursts: with none on its way after a few seconds,
        `provoke` makes some (poison messages: instructions to support). With still none
        within `timeout_s` the mailer is killed idle.
        """
        mode = rng.choice(("before", "after"))
        pid = self.cluster.pid(MAILER)
        self.kill.arm(mode)
        hit = self.kill.wait(3.0, disarm=False)
        provoked = ""
        if not hit:
            provoked = f" (provoked by {provoke()})"
            hit = self.kill.wait(timeout_s)
        if hit:
            what = "dropped" if mode == "before" else "kept, so a resend is a duplicate"
            return f"at a message{provoked}, {mode} the sink kept it: {what}"
        if self.cluster.pid(MAILER) == pid:
            self.cluster.kill(MAILER, signal.SIGKILL)
        return f"idle{provoked}: no mail on its way"

    def received_count(self) -> int:
        """Messages kept so far (quiescence: nothing more arrives)."""
        return len(self.sink.files()) if self.maildir.exists() else 0

    def received(self, store: Store) -> list[cc.Mail]:
        """Every mail the sink kept, per envelope address, named by the instructions."""
        return read_maildir(self.maildir, message_keys(store))

    def expected(self, store: Store) -> list[cc.Mail]:
        """The mails the run's instructions call for (see `expected_mails`)."""
        return expected_mails(store, self.support)


def message_keys(store: Store) -> dict[str, str]:
    """Message-ID -> outbox key of every mail an instruction of the store could have had."""
    people: dict[str, list[str]] = {}
    keys = {}
    for item in store.instructions.find():
        if item.office not in people:
            people[item.office] = [u.id for u in store.users.find(office=item.office)]
        for recipient in ("support", *people[item.office]):
            key = instruction_key(item.id, recipient)
            keys[message_id_for(key)] = key
    return keys


def read_maildir(maildir: Path, keys: Mapping[str, str]) -> list[cc.Mail]:
    """The sink's files in arrival order: one `Mail` per envelope recipient of each."""
    mails = []
    for path in sorted(maildir.glob("*.eml")) if maildir.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        message_id = str(message.get("Message-ID", "")).strip()
        at = path.stat().st_mtime
        for rcpt in message.get_all("X-Sink-Rcpt-To") or []:
            mails.append(cc.Mail(keys.get(message_id, message_id), str(rcpt).strip(), at))
    return mails


def expected_mails(store: Store, support: str) -> list[cc.Mail]:
    """Mails the instructions call for: each one the mailer decided (its outbox entries).

    An instruction still open with no decision at all (no fan-out marker) calls for the
    mails the reminder's rules name: support for a red one, else the dossier's managers
    or the office's admins. One closed before the mailer looked calls for none (its
    person acted before any mail could be decided).
    """
    outbox = store.outbox
    wanted = [
        cc.Mail(e.id, e.recipients[0], e.created_at.timestamp())
        for e in outbox.entries(kind="instruction")
        if e.recipients
    ]
    still_open = store.instructions.find(status=InstructionStatus.OPEN)
    decided = outbox.existing(fanout_key(i.id) for i in still_open)
    for item in still_open:
        if fanout_key(item.id) in decided:
            continue
        at = item.created_at.timestamp()
        if item.severity == Severity.RED:
            wanted.append(cc.Mail(instruction_key(item.id, "support"), support, at))
            continue
        users = store.users.find(office=item.office)
        for person in recipients_for(item.office, item.dossier, users):
            wanted.append(cc.Mail(instruction_key(item.id, person.user_id), person.email, at))
    return wanted
