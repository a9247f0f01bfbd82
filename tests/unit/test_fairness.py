"""A partition owner takes the light offices' messages first, then the heavy office's again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.fairness import next_batch, office_of


def test_a_light_office_goes_first_in_a_small_batch_of_its_own() -> None:
    buffer = ["a"] * 300 + ["b"] + ["a"] * 10 + ["c", "b"]
    picked, light = next_batch(buffer, 256, light_turn=True)
    assert light and [buffer[n] for n in picked] == ["b", "c", "b"]
    assert picked == [300, 311, 312]


def test_after_a_light_batch_the_heavy_office_gets_its_turn() -> None:
    buffer = ["a"] * 300 + ["b"]
    picked, light = next_batch(buffer, 256, light_turn=False)
    assert not light and picked == list(range(256))


def test_one_office_alone_or_offices_alike_go_in_arrival_order() -> None:
    assert next_batch(["a"] * 10, 256, True) == (list(range(10)), False)
    alike = ["a", "b"] * 100
    assert next_batch(alike, 256, True) == (list(range(200)), False)


def test_the_office_is_the_first_part_of_the_routing_key() -> None:
    assert office_of("kbrugge.acme") == "kbrugge"
    assert office_of("garbled") == "garbled"


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=400),
    st.integers(1, 300),
    st.booleans(),
)
def test_every_office_keeps_its_order_and_batches_stay_bounded(
    buffer: list[str], batch_max: int, light_turn: bool
) -> None:
    picked, _ = next_batch(buffer, batch_max, light_turn)
    assert picked == sorted(set(picked)) and len(picked) <= batch_max
    assert picked or not buffer
    for office in set(buffer):
        mine = [n for n, o in enumerate(buffer) if o == office]
        taken = [n for n in picked if buffer[n] == office]
        assert taken == mine[: len(taken)]  # a prefix: nothing after what is left behind
