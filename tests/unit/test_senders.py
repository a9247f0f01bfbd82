"""Who may send what into a control partition (dispatcher.senders)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from broker import topology
from broker.rabbitmq import Delivery
from dispatcher.inbound import (
    Act,
    DeadLettered,
    Done,
    Failed,
    Message,
    RetryDue,
    Started,
    Submitted,
    Unreadable,
    reported,
)
from dispatcher.senders import Senders, death_of
from workers.vocabulary import ActionType

AT = datetime(2026, 12, 2, tzinfo=UTC)
EVENTS: list[Message] = [
    Started("t1", 1, 1, "w", AT),
    Done("t1", 1, {}, AT),
    Failed("t1", 1, reported({"code": "x"})),
]
OTHERS: list[Message] = [
    Submitted("t1", "dossier.sync", {}),
    RetryDue("t1", 1, 1),
    DeadLettered("t1", 1, "rejected", "dossierflow.work.a", 1),
    Unreadable("m1", "rejected", "dossierflow.work.a"),
    Act("t1", "a1", ActionType.RESTART),
]
STRICT = Senders.of("connector-", "dispatcher", ["api", " "])
LOCAL = Senders()


@pytest.mark.parametrize("message", EVENTS)
def test_an_office_connector_event_through_the_events_exchange_is_believed(
    message: Message,
) -> None:
    assert STRICT.refusal(topology.EVENTS_EXCHANGE, "connector-a", "a", message, False) == ""
    assert LOCAL.refusal(topology.EVENTS_EXCHANGE, "guest", "a", message, False) == ""


@pytest.mark.parametrize("message", EVENTS)
def test_an_event_from_another_office_login_or_without_one_is_refused(message: Message) -> None:
    for login in ("connector-b", "connector-", "", "dispatcher", "connector-ab"):
        why = STRICT.refusal(topology.EVENTS_EXCHANGE, login, "a", message, False)
        assert "not sent by its connector login" in why, login


@pytest.mark.parametrize("message", OTHERS)
def test_commands_timers_and_dead_letters_never_come_through_the_events_exchange(
    message: Message,
) -> None:
    for rule in (STRICT, LOCAL):
        why = rule.refusal(topology.EVENTS_EXCHANGE, "connector-a", "a", message, False)
        assert "cannot come through the events exchange" in why


@pytest.mark.parametrize("message", EVENTS + OTHERS)
def test_an_x_death_on_anything_published_to_the_events_exchange_is_refused(
    message: Message,
) -> None:
    for rule in (STRICT, LOCAL):
        why = rule.refusal(topology.EVENTS_EXCHANGE, "connector-a", "a", message, True)
        assert "x-death" in why


@pytest.mark.parametrize("message", EVENTS + OTHERS)
@pytest.mark.parametrize(
    "exchange",
    [
        topology.PARTITIONS_EXCHANGE,
        topology.CONTROL_EXCHANGE,
        topology.DEAD_EXCHANGE,
        topology.retry_exchange(10),
    ],
)
def test_the_control_side_believes_only_the_dispatcher_and_the_api(
    exchange: str, message: Message
) -> None:
    for login in ("dispatcher", "api"):
        assert STRICT.refusal(exchange, login, "a", message, True) == ""
    for login in ("connector-a", "", "guest", " "):
        assert "may not send commands" in STRICT.refusal(exchange, login, "a", message, False)
    # One login for everything: the broker's permissions are the only gate.
    assert LOCAL.refusal(exchange, "", "a", message, False) == ""


def _delivery(exchange: str, queue: str) -> Delivery:
    death = {"reason": "rejected", "queue": queue, "count": 2}
    return Delivery(b"", 1, False, "a.d1", exchange, "m1", headers={"x-death": [death]})


def test_an_x_death_is_a_dead_letter_only_through_the_dead_letter_exchange() -> None:
    found = death_of(_delivery(topology.DEAD_EXCHANGE, "dossierflow.work.a"))
    assert found is not None and (found.reason, found.count) == ("rejected", 2)
    for exchange in (topology.EVENTS_EXCHANGE, topology.CONTROL_EXCHANGE, ""):
        assert death_of(_delivery(exchange, "dossierflow.work.a")) is None
    # An expired retry timer comes back through the control exchange: no dead letter.
    assert death_of(_delivery(topology.CONTROL_EXCHANGE, "dossierflow.retry.10s")) is None


def test_a_dead_letter_names_the_run_its_work_message_was_released_under() -> None:
    d = _delivery(topology.DEAD_EXCHANGE, "dossierflow.work.a")
    assert death_of(d) is not None and death_of(d).run is None  # released by an earlier version
    for value in ("3", b"3"):
        headers = {**d.headers, topology.RUN_HEADER: value}
        found = death_of(dataclasses.replace(d, headers=headers))
        assert found is not None and found.run == 3
    bad = dataclasses.replace(d, headers={**d.headers, topology.RUN_HEADER: "x"})
    assert death_of(bad) is not None and death_of(bad).run is None
