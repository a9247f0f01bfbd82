"""Metrics: bounded labels, counters fed by the rules' effects, rate-limited store gauges."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from dispatcher import core
from dispatcher.api import metrics as api_metrics
from dispatcher.client import new_task_id
from dispatcher.inbound import Act, Done, Failed, RetryDue, Started, Submitted, reported
from dispatcher.metrics import SequencerMetrics, Tally
from workers.metrics import OTHER, BoundedLabel, WorkerMetrics, kind_label, submitted_at_of
from workers.vocabulary import ActionType, TaskStatus

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_bounded_label_keeps_the_first_values_and_counts_the_rest_as_other() -> None:
    label = BoundedLabel(2)
    assert [label(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


def test_a_closed_label_takes_only_its_known_values() -> None:
    kinds = kind_label()
    assert kinds("booking_proposal.process") == "booking_proposal.process"
    assert kinds("x" * 200) == OTHER


def _samples(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for m in registry.collect() for s in m.samples if s.name == name]


def test_offices_are_no_label_unless_asked_and_then_capped() -> None:
    off = WorkerMetrics()
    off.started("t", "dossier.sync", 1, 1)
    off.finished("office1", "dossier.sync", "done", 0.1)
    assert _samples(off.registry, "dossierflow_worker_tasks_total") == [
        {"kind": "dossier.sync", "outcome": "done"}
    ]
    on = WorkerMetrics(per_office=True, office_limit=2)
    for office in ("o1", "o2", "o3", "o4"):
        on.started("t", "dossier.sync", 1, 1)
        on.finished(office, "dossier.sync", "done", 0.1)
    offices = {s["office"] for s in _samples(on.registry, "dossierflow_worker_tasks_total")}
    assert offices == {"o1", "o2", OTHER}


def test_a_task_id_tells_when_it_was_submitted() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    at = submitted_at_of(new_task_id())
    assert at is not None and before <= at <= datetime.now(UTC)
    assert submitted_at_of("not-one-of-ours") is None
    assert submitted_at_of("z" * 32) is None


def test_only_the_first_start_of_a_task_is_timed_from_its_submission() -> None:
    m = WorkerMetrics()
    task_id = new_task_id()
    m.started(task_id, "dossier.sync", run=1, attempt=1)
    m.started(task_id, "dossier.sync", run=1, attempt=2)  # redelivered
    m.started(task_id, "dossier.sync", run=2, attempt=1)  # after a delayed retry
    count = m.registry.get_sample_value(
        "dossierflow_task_start_delay_seconds_count", {"kind": "dossier.sync"}
    )
    assert count == 1


def _step(m: SequencerMetrics, d: core.Dossier, msg: object) -> list[core.Effect]:
    task_id = getattr(msg, "task_id", "")
    before = d.tasks.get(task_id)
    effects = core.step(d, msg, NOW, core.Rules((10,)))  # type: ignore[arg-type]
    m.observe(d, before.kind if before else None, effects)
    return effects


def test_the_sequencer_counts_submitted_finished_and_failed_tasks_by_kind_and_code() -> None:
    m = SequencerMetrics()
    d = core.Dossier("office1", "d1")
    _step(m, d, Submitted("t1", "dossier.sync", {}))
    _step(m, d, Submitted("t2", "dossier.sync", {}))
    _step(m, d, Started("t1", 1, 1, "w", NOW))
    _step(m, d, Done("t1", 1, {}, NOW))
    _step(m, d, Started("t2", 1, 1, "w", NOW))
    error = {"code": "database_error", "severity": "red", "transient": False, "message": "x"}
    _step(m, d, Failed("t2", 1, reported(error)))
    value = m.registry.get_sample_value
    assert value("dossierflow_tasks_submitted_total", {"kind": "dossier.sync"}) == 2
    assert (
        value("dossierflow_tasks_finished_total", {"kind": "dossier.sync", "status": "done"}) == 1
    )
    failed = {"kind": "dossier.sync", "status": "failed"}
    assert value("dossierflow_tasks_finished_total", failed) == 1
    red = {"code": "database_error", "severity": "red"}
    assert value("dossierflow_task_failures_total", red) == 1


def test_the_tally_follows_blocked_dossiers_waiting_tasks_and_retry_timers() -> None:
    tally = Tally()
    d = core.Dossier("office1", "d1")
    rules = core.Rules((10,))
    for n in range(3):
        core.step(d, Submitted(f"t{n}", "dossier.sync", {}), NOW, rules)
    tally.update([d])
    assert (tally.blocked, tally.waiting, tally.retrying) == (0, 2, 0)  # t0 queued
    core.step(d, Started("t0", 1, 1, "w", NOW), NOW, rules)
    transient = {"code": "package_unreachable", "severity": "orange", "transient": True}
    core.step(d, Failed("t0", 1, reported({**transient, "message": "down"})), NOW, rules)
    tally.update([d])
    assert d.head is not None and d.head.status is TaskStatus.RETRY_WAIT
    assert (tally.blocked, tally.waiting, tally.retrying) == (0, 2, 1)
    core.step(d, RetryDue("t0", 1, 1), NOW, rules)
    core.step(d, Started("t0", 2, 1, "w", NOW), NOW, rules)
    core.step(d, Failed("t0", 2, reported({"code": "database_error", "message": "x"})), NOW, rules)
    tally.update([d, d])  # counted once however often a dossier is met
    assert (tally.blocked, tally.waiting, tally.retrying) == (1, 2, 0)
    core.step(d, Act("t0", "a1", ActionType.CANCEL), NOW, rules)
    for n in (1, 2):
        core.step(d, Started(f"t{n}", 1, 1, "w", NOW), NOW, rules)
        core.step(d, Done(f"t{n}", 1, {}, NOW), NOW, rules)
    tally.update([d])
    assert (tally.blocked, tally.waiting, tally.retrying) == (0, 0, 0)


def test_the_api_reads_the_store_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []

    def read(_store: object) -> api_metrics.Reading:
        reads.append(1)
        return api_metrics.Reading(at=1e12, ok=True, blocked=len(reads))

    monkeypatch.setattr(api_metrics, "read_store", read)
    gauges = api_metrics.StoreGauges(store=None, interval_s=3600)  # type: ignore[arg-type]
    registry = CollectorRegistry()
    registry.register(gauges)
    for _ in range(5):
        assert registry.get_sample_value("dossierflow_dossiers_blocked") == 1
    assert len(reads) == 1


def _exported() -> set[str]:
    """Every metric family name the dispatcher, a connector and the API export."""
    names = set()
    for registry in (SequencerMetrics().registry, WorkerMetrics().registry):
        names |= {m.name for m in registry.collect()}
    names |= {m.name for m in api_metrics.StoreGauges(None, 1).collect()}  # type: ignore[arg-type]
    return names


def _used(text: str) -> set[str]:
    suffix = re.compile(r"_(total|bucket|count|sum)$")
    return {suffix.sub("", n) for n in re.findall(r"dossierflow_[a-z_]+", text)}


def test_the_alerts_and_the_dashboard_use_only_metrics_that_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_metrics, "read_store", lambda _s: api_metrics.Reading(ok=True))
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(_used(e) for e in exprs))
    assert used - _exported() == set()
    assert len(used) > 15
