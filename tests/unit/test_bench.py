"""The arithmetic of `dossierflow bench`: percentiles, pacing and the per-task figures."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from dossierflow.tools.bench import batches, broker_line, due_offset, percentile
from dossierflow.tools.stats import (
    STATS_DIR_ENV,
    Counts,
    counting,
    counts_from_json,
    counts_to_json,
    load_counts,
    per_task_line,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0
    assert percentile([7.0], 0.99) == 7.0


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 0.5))


def test_paced_items_are_due_at_index_over_rate() -> None:
    assert due_offset(0, 200.0) == 0.0
    assert due_offset(200, 200.0) == 1.0
    assert due_offset(150, 10.0) == 15.0


def test_unpaced_items_are_all_due_at_once() -> None:
    assert {due_offset(i, 0.0) for i in range(1000)} == {0.0}


def test_a_batch_is_due_when_its_first_item_is() -> None:
    starts = [due_offset(b.start, 200.0) for b in batches(1000, 100)]
    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]


def test_batches_cover_every_item_once_in_order() -> None:
    parts = batches(250, 100)
    assert [len(p) for p in parts] == [100, 100, 50]
    assert [i for p in parts for i in p] == list(range(250))
    assert [len(p) for p in batches(3, 1)] == [1, 1, 1]


def test_counts_of_several_processes_add_up(tmp_path: Path) -> None:
    one = Counts(Counter({"insert": 2, "find": 1}), Counter({"insert": 200}))
    two = Counts(Counter({"insert": 1, "update": 4}), Counter({"insert": 1, "update": 400}))
    (tmp_path / "dispatcher-11.json").write_text(counts_to_json(one))
    (tmp_path / "dispatcher-12.json").write_text(counts_to_json(two))
    (tmp_path / "client-13.json").write_text(counts_to_json(two))
    total = load_counts(tmp_path, "dispatcher")
    assert total.commands == Counter({"insert": 3, "find": 1, "update": 4})
    assert total.statements == Counter({"insert": 201, "update": 400})
    assert total.total == 8
    assert load_counts(tmp_path, "nobody").total == 0


def test_counts_survive_their_file() -> None:
    counts = Counts(Counter({"update": 3}), Counter({"update": 30}))
    assert counts_from_json(counts_to_json(counts)) == counts


def test_per_task_line_splits_by_command_biggest_first() -> None:
    counts = Counts(
        Counter({"insert": 100, "find": 300, "update": 100}),
        Counter({"insert": 100, "update": 400}),
    )
    assert per_task_line(counts, 100) == (
        "5.00 per task: find 3.00, insert 1.00, update 1.00 (4.00 statements)"
    )
    assert per_task_line(Counts(), 10) == "0.00 per task: none"


def test_broker_line_divides_published_and_delivered_by_tasks() -> None:
    stats = {"publish": 20000, "deliver_get": 15000, "publish_details": {"rate": 0.0}}
    assert broker_line(stats, 5000) == (
        "4.00 published, 3.00 delivered per task (20000 and 15000 for 5000 tasks)"
    )
    assert broker_line({}, 10).startswith("0.00 published, 0.00 delivered")


def test_counting_writes_nothing_unless_asked(tmp_path: Path) -> None:
    with counting("dispatcher", environ={}) as listeners:
        assert listeners == []
    with counting("dispatcher", environ={STATS_DIR_ENV: str(tmp_path)}) as listeners:
        assert len(listeners) == 1
    (written,) = tmp_path.glob("dispatcher-*.json")
    assert counts_from_json(written.read_text()) == Counts()
