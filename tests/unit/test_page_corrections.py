"""Correction fields come from the kind's payload schema and are checked by it."""

from __future__ import annotations

import workers.handlers  # noqa: F401  (registers the built-in kinds)
from dispatcher.api.corrections import INVALID, REQUIRED, corrected, fields_for, submitted

BOOKING = {
    "dossier_code": "ACME",
    "proposal_id": "p1",
    "period": "2024-05",
    "journal": "VK",
    "lines": [{"account": "700000", "amount": "10.00", "vat_code": "21"}],
}


def test_an_activation_with_a_wrong_code_offers_the_dossier_code_field() -> None:
    fields = fields_for("dossier.activate", "unknown_dossier_code", {"dossier_code": "TYPO"})
    assert [(f.name, f.value, f.label) for f in fields] == [
        ("dossier_code", "TYPO", "Dossier code")
    ]


def test_a_booking_in_a_closed_period_offers_the_period_with_its_format() -> None:
    (field,) = fields_for("booking_proposal.process", "invalid_period", BOOKING)
    assert (field.name, field.value, field.hint) == (
        "period",
        "2024-05",
        "Year and month, e.g. 2024-05",
    )


def test_failures_a_field_cannot_fix_offer_none() -> None:
    assert fields_for("booking_proposal.process", "database_error", BOOKING) == []
    assert fields_for("booking_proposal.process", "invalid_vat_code", BOOKING) == []  # nested
    assert fields_for("no.such.kind", "unknown_dossier_code", BOOKING) == []


def test_a_valid_correction_changes_only_its_field() -> None:
    payload, _ = corrected(
        "booking_proposal.process", "invalid_period", BOOKING, {"period": "2024-06"}
    )
    assert payload == {**BOOKING, "period": "2024-06"}


def test_a_wrong_value_comes_back_with_its_error_next_to_the_field() -> None:
    payload, fields = corrected(
        "dossier.activate", "unknown_dossier_code", {"dossier_code": "TYPO"},
        {"dossier_code": "not a code!"},
    )  # fmt: skip
    assert payload is None
    assert [(f.name, f.value, f.error) for f in fields] == [
        ("dossier_code", "not a code!", INVALID)
    ]
    _, fields = corrected("booking_proposal.process", "invalid_period", BOOKING, {"period": ""})
    assert fields[0].error == REQUIRED
    _, fields = corrected(
        "booking_proposal.process", "invalid_period", BOOKING, {"period": "2024-13"}
    )
    assert fields[0].error == INVALID


def test_only_offered_fields_are_taken_from_the_form() -> None:
    form = {"field.period": " 2024-06 ", "field.journal": "XX", "csrf": "c", "field.x": 3}
    assert submitted(form) == {"period": "2024-06", "journal": "XX"}
    payload, _ = corrected("booking_proposal.process", "invalid_period", BOOKING, submitted(form))
    assert payload is not None and payload["journal"] == "VK"
