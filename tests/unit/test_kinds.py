"""Payload schemas, the kind registry and the built-in handlers (run against the no-op package)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import workers.handlers  # registers the built-in kinds
from workers.accounting import NoopPackage, TaskRef
from workers.errors import InvalidPayload, UnknownKind
from workers.kinds import (
    Kind,
    KindSpec,
    ProcessBookingProposal,
    Registry,
    SyncDossier,
    kinds,
    spec_for,
    validate_payload,
)

LINE = {"account": "700000", "amount": "121.00", "vat_code": "V21"}
GOOD: dict[str, dict[str, Any]] = {
    "booking_proposal.process": {
        "dossier_code": "ACME-01",
        "proposal_id": "P.42",
        "period": "2024-03",
        "journal": "VK",
        "lines": [LINE, {"account": "451000", "amount": "-21", "vat_code": "V21"}],
    },
    "booking_proposal.delete": {"dossier_code": "ACME-01", "proposal_id": "P.42"},
    "dossier.sync": {"dossier_code": "ACME-01"},
    "dossier.activate": {"dossier_code": "ACME-01"},
}


def process_payload(**changes: Any) -> dict[str, Any]:
    """The good booking payload with `changes` applied."""
    return {**GOOD["booking_proposal.process"], **changes}


def test_the_four_builtin_kinds_are_registered() -> None:
    assert kinds() == sorted(Kind)
    assert [spec.kind for spec in workers.handlers.BUILTIN_SPECS] == list(Kind)


def test_only_dossier_sync_is_coalescible() -> None:
    assert [k for k in kinds() if spec_for(k).coalescible] == ["dossier.sync"]


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_good_payload_validates_into_the_kinds_model(kind: str) -> None:
    model = validate_payload(kind, GOOD[kind])
    assert isinstance(model, spec_for(kind).payload_model)
    assert model.model_dump(mode="json") == GOOD[kind]


def test_amounts_are_decimals_and_accept_numbers() -> None:
    lines = [
        {"account": "1", "amount": 12.5, "vat_code": "V0"},
        {"account": "1", "amount": 3, "vat_code": "V0"},
    ]
    model = validate_payload("booking_proposal.process", process_payload(lines=lines))
    assert isinstance(model, ProcessBookingProposal)
    assert [line.amount for line in model.lines] == [Decimal("12.5"), Decimal(3)]


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_unknown_field_is_rejected(kind: str) -> None:
    with pytest.raises(InvalidPayload, match="surprise: Extra inputs are not permitted"):
        validate_payload(kind, {**GOOD[kind], "surprise": "x"})


@pytest.mark.parametrize(
    "period", ["2024-13", "2024-00", "2024-1", "24-01", "\uff12\uff10\uff12\uff14-01", ""]
)
def test_bad_period_is_rejected(period: str) -> None:
    with pytest.raises(InvalidPayload, match="period: String should match pattern"):
        validate_payload("booking_proposal.process", process_payload(period=period))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lines": []}, "lines"),
        ({"lines": [LINE] * 501}, "lines"),
        ({"lines": [{**LINE, "amount": "1.001"}]}, "lines.0.amount"),
        ({"lines": [{**LINE, "amount": "1000000000000"}]}, "lines.0.amount"),
        ({"lines": [{**LINE, "amount": "NaN"}]}, "lines.0.amount"),
        ({"lines": [{**LINE, "amount": True}]}, "lines.0.amount"),
        ({"lines": [{**LINE, "vat_code": "V 21"}]}, "lines.0.vat_code"),
        ({"dossier_code": "x" * 65}, "dossier_code"),
        ({"dossier_code": 12}, "dossier_code"),
        ({"journal": None}, "journal"),
    ],
)
def test_invalid_field_is_named_in_the_error(changes: dict[str, Any], field: str) -> None:
    expected = f"^invalid payload for booking_proposal.process: {field}:"
    with pytest.raises(InvalidPayload, match=expected):
        validate_payload("booking_proposal.process", process_payload(**changes))


def test_error_message_does_not_echo_input_values() -> None:
    payload = process_payload(journal="Jan Jansen", lines=[{**LINE, "account": "jan@example.com"}])
    with pytest.raises(InvalidPayload) as caught:
        validate_payload("booking_proposal.process", payload)
    assert "Jan" not in str(caught.value)
    assert "jan@" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_error_message_lists_at_most_ten_errors() -> None:
    payload = process_payload(lines=[{**LINE, "amount": "x"}] * 30)
    with pytest.raises(InvalidPayload, match=r"; and \d+ more$") as caught:
        validate_payload("booking_proposal.process", payload)
    assert str(caught.value).count("Input should be a valid decimal") == 10


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(UnknownKind, match=r"unknown task kind dossier\.explode"):
        validate_payload("dossier.explode", {"dossier_code": "A"})
    with pytest.raises(UnknownKind):
        spec_for("dossier.explode")


def test_registering_a_new_kind_is_all_it_takes() -> None:
    registry = Registry()

    def archive(ref: TaskRef, payload: SyncDossier, package: Any) -> dict[str, str | int | bool]:
        return {"archived": payload.dossier_code}

    spec = KindSpec("dossier.archive", SyncDossier, archive)
    registry.register(spec)
    registry.register(spec)  # the same spec again is harmless
    assert registry.kinds() == ["dossier.archive"]
    assert isinstance(
        registry.validate_payload("dossier.archive", {"dossier_code": "A"}), SyncDossier
    )
    payload = registry.spec_for("dossier.archive").validate({"dossier_code": "A"})
    assert spec.handler(REF, payload, NoopPackage()) == {"archived": "A"}
    with pytest.raises(ValueError, match="already registered"):
        registry.register(KindSpec("dossier.archive", SyncDossier, archive, coalescible=True))


REF = TaskRef("t-1", "office-1", "dossier-1", "booking_proposal.process", 1)


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("booking_proposal.process", {"booking_id": "noop-t-1", "lines": 2}),
        ("booking_proposal.delete", {"deleted": False}),
        ("dossier.sync", {"bookings": 0}),
        ("dossier.activate", {"activated": True, "dossier_code": "ACME-01"}),
    ],
)
def test_builtin_handler_calls_the_package_and_returns_a_small_result(
    kind: str, result: dict[str, object]
) -> None:
    spec = spec_for(kind)
    assert spec.handler(REF, validate_payload(kind, GOOD[kind]), NoopPackage()) == result


SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.decimals() | st.text()
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["dossier_code", "proposal_id", "period", "journal", "lines", "account", "amount", "vat_code"]
)
LINES = st.lists(st.dictionaries(FIELDS | st.text(max_size=8), JSON, max_size=4), max_size=3)
PAYLOADS = st.dictionaries(FIELDS | st.text(max_size=12) | st.integers(), JSON | LINES, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(GOOD)), payload=PAYLOADS)
def test_random_payload_is_either_valid_or_invalid_payload(
    kind: str, payload: dict[Any, Any]
) -> None:
    try:
        model = validate_payload(kind, payload)
    except InvalidPayload as exc:
        assert str(exc).startswith(f"invalid payload for {kind}: ")
    else:
        assert isinstance(model, BaseModel)


@settings(max_examples=100, deadline=None)
@given(payload=JSON.filter(lambda value: not isinstance(value, dict)))
def test_payload_that_is_not_a_mapping_is_an_invalid_payload(payload: Any) -> None:
    with pytest.raises(InvalidPayload):
        validate_payload("dossier.sync", payload)


@settings(max_examples=300, deadline=None)
@given(amount=st.decimals() | st.floats() | st.text(max_size=30) | st.integers())
def test_any_amount_is_either_a_two_decimal_number_below_a_trillion_or_invalid(
    amount: Any,
) -> None:
    payload = process_payload(lines=[{**LINE, "amount": amount}])
    try:
        model = validate_payload("booking_proposal.process", payload)
    except InvalidPayload:
        return
    assert isinstance(model, ProcessBookingProposal)
    value = model.lines[0].amount
    assert value.is_finite()
    assert abs(value) < 10**12
    assert value == value.quantize(Decimal("0.01"))
