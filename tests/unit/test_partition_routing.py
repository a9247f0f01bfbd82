"""The partition of a dossier: computed by every publisher, the same everywhere and always.

The broker keeps no state for it (broker/topology.py, PARTITIONS_EXCHANGE), so what these
tests pin is what keeps a dossier on one partition across broker restarts and upgrades.
"""

from __future__ import annotations

from collections import Counter

import pytest

from broker import topology


def test_jump_hash_matches_the_papers_reference_implementation() -> None:
    # Values of the C++ code in Lamping and Veach (2014), compiled with gcc.
    keys = [0, 1, 2, 3, 10**18, 2**64 - 1]
    assert [topology.jump_hash(k, 8) for k in keys] == [0, 6, 6, 3, 1, 7]
    assert topology.jump_hash(123456789, 1000) == 294
    assert topology.jump_hash(987654321987654321, 100000) == 17149


def test_a_dossiers_partition_is_fixed_for_good() -> None:
    # Published messages, timers and dead letters of a running system carry these numbers:
    # a change of the function would send a dossier's next messages to another owner.
    keys = ["office1.d0001", "office1.d0002", "office2.d0001", "a.b"]
    assert [topology.partition_of(k, 8) for k in keys] == [3, 0, 7, 7]
    assert topology.partition_headers("office1.d0001", 8) == {"partition": "3"}
    assert topology.Topology(partitions=8).route("office2.d0001") == {"partition": "7"}


def test_dossiers_spread_evenly_over_the_partitions() -> None:
    counts = Counter(
        topology.partition_of(f"office{o}.d{n:04d}", 8) for o in range(5) for n in range(2000)
    )
    assert set(counts) == set(range(8))
    assert max(counts.values()) < 1.1 * 10_000 / 8
    assert min(counts.values()) > 0.9 * 10_000 / 8


def test_one_more_partition_moves_only_the_dossiers_it_takes() -> None:
    keys = [f"office1.d{n:05d}" for n in range(10_000)]
    before = {k: topology.partition_of(k, 8) for k in keys}
    after = {k: topology.partition_of(k, 9) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == 8 for k in moved)
    assert 0.08 < len(moved) / len(keys) < 0.14  # about 1/9


def test_each_partition_queue_is_bound_by_its_own_index() -> None:
    queues = topology.Topology(partitions=12).partition_queues()
    assert [topology.partition_index(q) for q in queues] == list(range(12))
    assert topology.partition_binding(11) == {"x-match": "all", "partition": "11"}


def test_no_partitions_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        topology.partition_of("office1.d1", 0)
