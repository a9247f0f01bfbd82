"""Failures become instructions, block their dossier, and resume after restart or cancel."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from broker import topology
from broker.messages import Envelope, MessageType, encode, utcnow
from broker.rabbitmq import Connection
from dispatcher.client import Client
from dispatcher.errors import ActionRefused
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import booking, company_code
from store import InstructionRecord, Role, Store
from tests.e2e.helpers import client_for, package_with
from tests.waiting import wait_for
from workers.accounting.simulated import SimulatedPackage
from workers.texts import instruction_text
from workers.vocabulary import ActionStatus, InstructionStatus, TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

OFFICE = "office1"


@dataclass
class Running:
    """A started cluster with its package, client and store."""

    cluster: Cluster
    package: SimulatedPackage
    client: Client
    store: Store

    def book(self, dossier: str, proposal: str, **changes: object) -> str:
        payload = booking(company_code(OFFICE, dossier), proposal, random.Random(proposal))
        payload.update(changes)
        return self.client.submit(OFFICE, dossier, "booking_proposal.process", payload)

    def status(self, task_id: str) -> TaskStatus | None:
        task = self.store.tasks.get(task_id)
        return task.status if task else None

    def wait_status(self, task_id: str, status: TaskStatus, timeout: float = 60) -> None:
        wait_for(
            lambda: self.status(task_id) is status,
            timeout,
            f"task {task_id} {status.value} (is {self.status(task_id)})",
        )

    def wait_blocked(self, task_id: str, timeout: float = 30) -> list[InstructionRecord]:
        """Wait until the failed task's instruction exists and its dossier is blocked.

        The sequencer writes the failure, then the instruction, then the block: a reader
        between two of those writes sees part of it.
        """
        task = self.store.tasks.get(task_id)
        assert task is not None
        key = f"{task.office}.{task.dossier}"

        def settled() -> list[InstructionRecord]:
            dossier = self.store.dossiers.get(key)
            found = self.store.instructions.find(task_id=task_id)
            return found if found and dossier is not None and dossier.blocked else []

        return wait_for(settled, timeout, f"instruction and block for {task_id}")


@pytest.fixture
def run(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> Iterator[Callable[..., Running]]:
    clients: list[Client] = []

    def start(dossiers: list[str], workers: int = 2, **overrides: object) -> Running:
        package = package_with(settings.simpackage_path, OFFICE, dossiers)
        cluster = make_cluster(**overrides)
        cluster.start_dispatcher()
        for n in range(workers):
            cluster.start_worker(OFFICE, f"worker-{n}")
        client = client_for(cluster, store)
        clients.append(client)
        return Running(cluster, package, client, store)

    yield start
    for client in clients:
        client.close()


def _instructions(store: Store, task_id: str) -> list[object]:
    return list(store.instructions.find(task_id=task_id))


def test_each_error_code_gives_its_instruction_severity_and_text(
    run: Callable[..., Running],
) -> None:
    cases = ["period", "journal", "vat", "dup", "code", "unreachable", "database", "bug"]
    r = run(cases, retry_delays_s="1,1")
    code = lambda d: company_code(OFFICE, d)  # noqa: E731
    r.package.close_period(code("period"), "2024-05")
    r.package.inject_fault(code("unreachable"), "unreachable")
    r.package.break_database(code("database"))
    r.package.inject_fault(code("bug"), "bug")
    submitted = {
        "period": r.book("period", "p1", period="2024-05"),
        "journal": r.book("journal", "p1", journal="NOPE"),
        "vat": r.book("vat", "p1", lines=[{"account": "6", "amount": "1", "vat_code": "X9"}]),
        "code": r.client.submit(OFFICE, "code", "dossier.activate", {"dossier_code": "WRONG"}),
        "unreachable": r.client.submit(
            OFFICE, "unreachable", "dossier.sync", {"dossier_code": code("unreachable")}
        ),
        "database": r.book("database", "p1"),
        "bug": r.book("bug", "p1"),
    }
    r.book("dup", "p1")
    submitted["dup"] = r.book("dup", "p1")
    expected = {
        "period": ("invalid_period", "orange", {"period": "2024-05"}),
        "journal": ("invalid_journal", "orange", {"journal": "NOPE"}),
        "vat": ("invalid_vat_code", "orange", {"vat_code": "X9"}),
        "dup": ("duplicate_booking", "orange", {"proposal_id": "p1"}),
        "code": ("unknown_dossier_code", "orange", {"dossier_code": "WRONG"}),
        "unreachable": ("package_unreachable", "orange", {}),
        "database": ("database_error", "red", {}),
        "bug": ("unknown_error", "red", {}),
    }
    for case, task_id in submitted.items():
        r.wait_status(task_id, TaskStatus.FAILED, timeout=90)
        (instruction,) = r.wait_blocked(task_id)
        want_code, want_severity, want_facts = expected[case]
        assert (instruction.code, instruction.severity) == (want_code, want_severity), case
        assert want_facts.items() <= instruction.facts.items(), case
        for language in ("nl", "fr", "en"):
            text = instruction_text(instruction.code, instruction.facts, language)
            assert text.title and text.action
            for value in want_facts.values():
                assert value in text.title + text.action, (case, language)
        dossier = r.store.dossiers.get(f"{OFFICE}.{case}")
        assert dossier is not None and dossier.blocked and dossier.active == task_id


def test_blocked_dossier_runs_nothing_until_restart_while_others_keep_running(
    run: Callable[..., Running],
) -> None:
    r = run(["blocked", "free"])
    r.package.close_period(company_code(OFFICE, "blocked"), "2024-05")
    failing = r.book("blocked", "p0", period="2024-05")
    later = [r.book("blocked", f"p{i}") for i in range(1, 4)]
    others = [r.book("free", f"p{i}") for i in range(5)]
    r.wait_status(failing, TaskStatus.FAILED)
    r.wait_blocked(failing)
    for task_id in others:
        r.wait_status(task_id, TaskStatus.DONE)
    assert [r.status(t) for t in later] == [TaskStatus.WAITING] * 3
    ran = {e.task_id for e in r.package.executions()}
    assert ran.isdisjoint(later), "a task behind the failure ran"

    r.package.open_period(company_code(OFFICE, "blocked"), "2024-05")
    action = r.client.restart(failing, role=Role.ADMIN)
    assert action.status is ActionStatus.APPLIED
    for task_id in [failing, *later]:
        r.wait_status(task_id, TaskStatus.DONE)
    report = r.package.check_order({(OFFICE, "blocked"): [failing, *later]})
    assert report.out_of_order == 0 and report.lost == ()
    (instruction,) = r.store.instructions.find(task_id=failing)
    assert instruction.status is InstructionStatus.RESOLVED
    assert r.package.booking_count(failing) == 1


def test_cancelling_a_failed_activation_unblocks_the_dossier(run: Callable[..., Running]) -> None:
    r = run(["d1"])
    activation = r.client.submit(OFFICE, "d1", "dossier.activate", {"dossier_code": "TYPO"})
    after = r.book("d1", "p1")
    r.wait_status(activation, TaskStatus.FAILED)
    assert r.status(after) is TaskStatus.WAITING
    with pytest.raises(ActionRefused, match="only support"):
        r.client.cancel(after, role=Role.ADMIN)  # an office cancels activations only
    r.client.cancel(activation, role=Role.ADMIN)
    r.wait_status(after, TaskStatus.DONE)
    assert r.status(activation) is TaskStatus.CANCELLED
    with pytest.raises(ActionRefused, match="cancelled"):
        r.client.restart(activation)


def test_correcting_the_dossier_code_and_restarting_succeeds(run: Callable[..., Running]) -> None:
    r = run(["d1"])
    activation = r.client.submit(OFFICE, "d1", "dossier.activate", {"dossier_code": "TYPO"})
    r.wait_status(activation, TaskStatus.FAILED)
    r.client.restart(
        activation, payload={"dossier_code": company_code(OFFICE, "d1")}, role=Role.ADMIN
    )
    r.wait_status(activation, TaskStatus.DONE)
    task = r.store.tasks.get(activation)
    assert task is not None and task.payload == {"dossier_code": company_code(OFFICE, "d1")}
    assert (activation, company_code(OFFICE, "d1")) in r.package.activations()


def test_an_action_on_a_task_in_the_wrong_state_is_a_clear_error(
    run: Callable[..., Running],
) -> None:
    r = run(["d1"])
    task_id = r.book("d1", "p1")
    r.wait_status(task_id, TaskStatus.DONE)
    for act in (r.client.restart, r.client.cancel, r.client.resolve):
        with pytest.raises(ActionRefused, match="is done"):
            act(task_id)


def test_package_unreachable_for_30_s_tasks_wait_and_resume_none_fails(
    run: Callable[..., Running],
) -> None:
    r = run(["d1", "d2"], retry_delays_s="3,6,12,24")
    r.package.set_unreachable(30)
    tasks = [r.book(d, f"p{i}") for i in range(3) for d in ("d1", "d2")]
    first = tasks[0]
    wait_for(
        lambda: (t := r.store.tasks.get(first)) and t.next_attempt_at is not None,
        30,
        "the first task to show its next attempt time",
    )
    for task_id in tasks:
        r.wait_status(task_id, TaskStatus.DONE, timeout=120)
    assert r.store.tasks.count([TaskStatus.FAILED]) == {}
    assert r.store.instructions.find() == []
    assert all(r.package.booking_count(t) == 1 for t in tasks)


def _bad_messages(task_ids: list[str]) -> list[tuple[str, bytes, str]]:
    """(dossier, body, message id) of ten kinds of message no connector can run."""
    good = Envelope(
        MessageType.RUN,
        task_ids[0],
        OFFICE,
        "bad",
        utcnow(),
        {"kind": "dossier.sync", "payload": {"dossier_code": "x"}},
    )
    body = json.loads(encode(good))

    def variant(**changes: object) -> bytes:
        return json.dumps({**body, **changes}).encode()

    return [
        ("bad", b"\xff\xfe\x00 not utf-8", "m1"),
        ("bad", b"{this is not json", "m2"),
        ("bad", b"[1, 2, 3]", "m3"),
        ("bad", variant(v=2), "m4"),
        ("bad", variant(type="task.teleport"), "m5"),
        ("bad", variant(task_id=None), "m6"),
        ("bad", variant(data={"kind": "coffee.make", "payload": {}}), "m7"),
        ("bad", variant(data={"kind": "dossier.sync", "payload": {"dossier_code": 5}}), "m8"),
        ("bad", variant(data={"kind": "dossier.sync", "payload": {"x": "y" * 200_000}}), "m9"),
        ("bad", variant(office="office2"), "m10"),
        ("bad", variant(type="task.done"), "m11"),
    ]


def test_bad_messages_each_become_one_red_instruction_and_connectors_live(
    run: Callable[..., Running], settings: Settings
) -> None:
    r = run(["bad"], workers=3)
    bad = _bad_messages(["0" * 32])
    conn = Connection.open(r.cluster.amqp_url, name="test-poison")
    channel = conn.channel(confirm=True)
    channel.declare_work_queue(OFFICE, settings.topology())
    for dossier, body, message_id in bad:
        channel.publish_raw(
            topology.WORK_EXCHANGE, f"{OFFICE}.{dossier}", body, message_id=message_id
        )
    conn.close()

    instructions = wait_for(
        lambda: len(found := r.store.instructions.find(dossier="bad")) >= len(bad) and found,
        60,
        f"{len(bad)} instructions",
    )
    assert len(instructions) == len(bad)
    assert {(i.code, i.severity) for i in instructions} == {("unreadable_message", "red")}
    assert all(i.raw for i in instructions)
    assert all(len(i.raw or b"") <= 4096 for i in instructions)
    assert all(p.poll() is None for p in r.cluster.procs.values()), "a process died"
    r.wait_status(r.book("bad", "p-next"), TaskStatus.DONE)  # the dossier is not blocked


def test_a_message_that_keeps_killing_connectors_stops_at_the_delivery_limit(
    run: Callable[..., Running],
) -> None:
    r = run(["crash"], workers=2, delivery_limit=3)
    r.package.inject_fault(company_code(OFFICE, "crash"), "crash")
    task_id = r.client.submit(
        OFFICE, "crash", "dossier.sync", {"dossier_code": company_code(OFFICE, "crash")}
    )
    restarts = 0

    def failed_or_revive() -> bool:
        nonlocal restarts
        for name, proc in list(r.cluster.procs.items()):
            if name.startswith("worker") and proc.poll() is not None:
                assert proc.returncode == 70
                restarts += 1
                r.cluster.start_worker(OFFICE, name)  # what a supervisor does
        return r.status(task_id) is TaskStatus.FAILED

    wait_for(failed_or_revive, 120, "the task to fail at the delivery limit", every=0.2)
    (instruction,) = r.wait_blocked(task_id)
    assert (instruction.code, instruction.severity) == ("unreadable_message", "red")
    assert instruction.facts.get("reason") == "delivery_limit"
    assert 3 <= restarts <= 4


def test_a_redelivered_failure_creates_no_second_instruction(
    run: Callable[..., Running],
) -> None:
    r = run(["d1"])
    r.package.close_period(company_code(OFFICE, "d1"), "2024-05")
    task_id = r.book("d1", "p1", period="2024-05")
    r.wait_status(task_id, TaskStatus.FAILED)
    task = r.store.tasks.get(task_id)
    assert task is not None and task.error is not None
    conn = Connection.open(r.cluster.amqp_url, name="test-duplicate")
    channel = conn.channel(confirm=True)
    failed = Envelope(
        MessageType.FAILED, task_id, OFFICE, "d1", utcnow(), {"attempt": 1, "error": task.error}
    )
    for _ in range(3):
        channel.publish(topology.DEAD_EXCHANGE, failed)
    marker = r.book("d1", "p-marker")  # handled after the duplicates in the same partition
    conn.close()
    wait_for(lambda: r.status(marker) is TaskStatus.WAITING, 30, "the marker accepted")
    assert len(r.store.instructions.find(task_id=task_id)) == 1


def test_a_sync_submitted_while_an_equal_one_waits_is_coalesced(
    run: Callable[..., Running],
) -> None:
    r = run(["d1"], workers=0)
    payload = {"dossier_code": company_code(OFFICE, "d1")}
    first = r.client.submit(OFFICE, "d1", "dossier.sync", payload)
    assert r.client.submit(OFFICE, "d1", "dossier.sync", payload) == first
    other = r.client.submit(OFFICE, "d2", "dossier.sync", payload)
    assert other != first
    booking_id = r.book("d1", "p1")
    assert r.book("d1", "p1") != booking_id, "bookings are never coalesced"
    # A sync asked for after other work must run after it: no merging into the earlier one.
    later = r.client.submit(OFFICE, "d1", "dossier.sync", payload)
    assert later != first
    assert r.client.submit(OFFICE, "d1", "dossier.sync", payload) == later
