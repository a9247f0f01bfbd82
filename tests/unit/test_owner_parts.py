"""The pure parts of the partition owner: decoding deliveries, collecting a batch's writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from broker import topology
from broker.messages import Envelope, MessageType, encode
from dispatcher import core
from dispatcher.batchwrite import RESYNC, Collector, Notices
from dispatcher.inbound import DeadLettered, Death, Done, Submitted, Unreadable, inbound
from dispatcher.loading import load_dossiers
from workers.vocabulary import TaskStatus

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _body(message_type: MessageType, **data: object) -> bytes:
    return encode(Envelope(message_type, "t1", "o1", "d1", NOW, data))


def test_an_event_without_its_release_run_is_dropped_not_believed() -> None:
    got = inbound(_body(MessageType.DONE, result={}), "t1", "o1.d1", None, redelivered=False)
    assert got.message is None and "run" in got.problem


def test_a_message_routed_to_another_dossier_than_it_names_is_dropped() -> None:
    got = inbound(_body(MessageType.DONE, run=1), "t1", "o2.d9", None, redelivered=False)
    assert got.message is None and "routing key" in got.problem


def test_a_submitted_command_carries_the_task_and_a_redelivered_one_is_rechecked() -> None:
    body = _body(MessageType.SUBMITTED, kind="dossier.sync", payload={"dossier_code": "c"})
    fresh = inbound(body, "t1", "o1.d1", None, redelivered=False).message
    again = inbound(body, "t1", "o1.d1", None, redelivered=True).message
    bare = inbound(_body(MessageType.SUBMITTED), "t1", "o1.d1", None, redelivered=False).message
    assert fresh == Submitted("t1", "dossier.sync", {"dossier_code": "c"})
    assert isinstance(again, Submitted) and again.recheck
    assert isinstance(bare, Submitted) and bare.recheck  # the owner fills kind and payload in


def test_dead_lettered_work_becomes_a_dead_letter_and_garbage_an_unreadable_one() -> None:
    death = Death("delivery_limit", "dossierflow.work.o1", 3)
    run = _body(MessageType.RUN, kind="dossier.sync", payload={}, run=2)
    assert inbound(run, "t1", "o1.d1", death, redelivered=False).message == DeadLettered(
        "t1", 2, "delivery_limit", "dossierflow.work.o1", 3, run
    )
    garbage = inbound(b"\x00{", "m1", "o1.d1", death, redelivered=False).message
    assert garbage == Unreadable(
        "m1", "delivery_limit", "dossierflow.work.o1", b"\x00{", redelivered=False
    )
    again = inbound(b"\x00{", "m1", "o1.d1", death, redelivered=True).message
    assert isinstance(again, Unreadable) and again.redelivered  # may be a replay
    assert inbound(b"\x00{", "m1", "o1.d1", None, redelivered=False).message is None


def test_a_task_released_started_and_done_in_one_batch_is_written_once() -> None:
    rules = core.Rules()
    d = core.Dossier("o1", "d1")
    out = Collector(NOW, batch=7)
    for msg in (
        Submitted("t1", "dossier.sync", {"dossier_code": "c"}),
        Done("t1", 1, {"ok": True}, NOW),
    ):
        out.add(d, topology.partition_queue(0), 3, core.step(d, msg, NOW, rules))
    write = out.finish()
    ((task_id, epoch, fields, history),) = write.tasks
    assert (task_id, epoch, fields["status"], fields["batch"]) == ("t1", 3, "done", 7)
    assert [h.status for h in history] == [TaskStatus.WAITING, TaskStatus.QUEUED, TaskStatus.DONE]
    ((key, _, dossier),) = write.dossiers
    assert (key, dossier["next_seq"], dossier["open"], dossier["active"]) == ("o1.d1", 1, 0, None)
    ((release,),) = [[o for o in out.outgoing if o.exchange == topology.WORK_EXCHANGE]]
    assert release.envelope.data["run"] == 1 and release.envelope.type is MessageType.RUN


def test_a_batch_notice_names_the_tasks_and_dossiers_it_wrote_by_office() -> None:
    rules = core.Rules()
    d1, d2 = core.Dossier("o1", "d1"), core.Dossier("o2", "d2")
    out = Collector(NOW, batch=8)
    out.add(
        d1,
        topology.partition_queue(0),
        1,
        core.step(d1, Submitted("t1", "dossier.sync", {}), NOW, rules),
    )
    out.add(
        d2,
        topology.partition_queue(0),
        1,
        core.step(d2, Submitted("t2", "dossier.sync", {}), NOW, rules),
    )
    out.finish()
    notices = Notices(1.0)
    notices.add(out)
    notice = json.loads(notices.due() or b"{}")
    assert notice == {
        "v": 1,
        "tasks": {"o1": ["t1"], "o2": ["t2"]},
        "dossiers": {"o1": ["d1"], "o2": ["d2"]},  # both became busy: their documents changed
    }
    quiet = Notices(1.0)
    quiet.add(Collector(NOW, batch=9))
    assert quiet.due() is None  # a batch that wrote nothing says nothing


class _Stored:
    """What the store holds for one dossier (a stand-in for the partition owner's reads)."""

    def __init__(self, tasks: list[dict[str, object]]) -> None:
        self._tasks = tasks

    def dossiers(self, keys: object) -> dict[str, dict[str, object]]:
        return {"o1.d1": {"_id": "o1.d1", "next_seq": 1, "open": 1, "active": "t1"}}

    def open_tasks(self, keys: object) -> list[dict[str, object]]:
        return self._tasks


def _queued_head(epoch: int, batch: int) -> dict[str, object]:
    return {"_id": "t1", "office": "o1", "dossier": "d1", "kind": "dossier.sync",
            "payload": {}, "seq": 0, "status": "queued", "run": 1, "epoch": epoch,
            "batch": batch}  # fmt: skip


def test_rabbitmq_restart_a_release_written_by_a_lost_owner_is_published_again() -> None:
    # The owner of epoch 3 wrote t1 queued in its batch 9 and lost the partition (broker
    # restart) before the publish was confirmed; its successor (epoch 4) has confirmed
    # batches of its own since. t1's stamp must not look confirmed by those.
    partition = {"epoch": 4, "confirmed": {"3": 8, "4": 50}}
    stored = _Stored([_queued_head(epoch=3, batch=9)])
    dossiers, repairs = load_dossiers(stored, {"o1.d1": False}, {"o1.d1": partition})  # type: ignore[arg-type]
    assert [type(e) for e in repairs["o1.d1"]] == [core.Release]
    confirmed = _Stored([_queued_head(epoch=3, batch=8)])
    _, none = load_dossiers(confirmed, {"o1.d1": False}, {"o1.d1": partition})  # type: ignore[arg-type]
    assert none == {} and dossiers["o1.d1"].active == "t1"


def test_change_notices_go_at_most_once_a_second_and_name_every_change_since() -> None:
    rules = core.Rules((1, 2))
    now = [100.0]
    notices = Notices(1.0, clock=lambda: now[0])
    assert notices.due() is None  # nothing changed

    def batch(task: str, dossier: str) -> Collector:
        out = Collector(NOW, batch=1)
        d = core.Dossier("o1", dossier)
        step = core.step(d, Submitted(task, "dossier.sync", {}), NOW, rules)
        out.add(d, topology.partition_queue(0), 1, step)
        out.finish()
        return out

    notices.add(batch("t1", "d1"))
    first = json.loads(notices.due() or b"{}")  # after a quiet spell: at once
    assert first["tasks"] == {"o1": ["t1"]}
    notices.add(batch("t2", "d2"))
    now[0] += 0.5
    assert notices.due() is None  # within the second: it waits
    notices.add(batch("t3", "d3"))
    now[0] += 0.5
    later = json.loads(notices.due() or b"{}")
    assert later["tasks"] == {"o1": ["t2", "t3"]}
    assert later["dossiers"] == {"o1": ["d2", "d3"]}
    now[0] += 5
    assert notices.due() is None  # everything went out


def test_while_nobody_listens_changes_are_not_kept_and_a_probe_asks_for_a_resync() -> None:
    rules = core.Rules((1, 2))
    now = [100.0]
    notices = Notices(1.0, probe_every_s=5.0, clock=lambda: now[0])

    def batch(task: str) -> Collector:
        out = Collector(NOW, batch=1)
        d = core.Dossier("o1", f"d-{task}")
        out.add(
            d,
            topology.partition_queue(0),
            1,
            core.step(d, Submitted(task, "dossier.sync", {}), NOW, rules),
        )
        out.finish()
        return out

    notices.add(batch("t1"))
    assert notices.due() is not None
    notices.heard(False)  # it came back: nobody listens
    now[0] += 2
    notices.add(batch("t2"))
    assert notices.due() is None  # no notice per second while nobody listens
    now[0] += 3
    assert notices.due() == RESYNC  # a probe, every 5 s, when something changed
    notices.heard(False)
    now[0] += 10
    assert notices.due() is None  # nothing changed since the last probe: no probe
    notices.add(batch("t3"))
    assert notices.due() == RESYNC
    notices.heard(True)  # someone listens now, and reads everything again
    notices.add(batch("t4"))
    now[0] += 1
    assert json.loads(notices.due() or b"{}")["tasks"] == {"o1": ["t4"]}
