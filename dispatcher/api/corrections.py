"""Typed correction fields for a failed task, generated from its kind's payload schema.

An office user corrects a task through named fields (a dossier code for an activation,
a period for a booking); only support edits the payload as JSON. The fields offered
are those the failure points at, and only if the kind's schema has them as plain text
fields, so a new kind gets correction fields without touching the page.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from dispatcher.api.i18n import N_
from workers.kinds import spec_for
from workers.vocabulary import ErrorCode

FIELD_PREFIX = "field."
"""Form names of correction fields: `field.<payload field>`."""

# Which payload field a failure asks a person to correct.
FIELD_OF_ERROR: Mapping[str, str] = {
    ErrorCode.UNKNOWN_DOSSIER_CODE: "dossier_code",
    ErrorCode.INVALID_PERIOD: "period",
    ErrorCode.INVALID_JOURNAL: "journal",
}

LABELS: Mapping[str, str] = {
    "dossier_code": N_("Dossier code"),
    "period": N_("Period"),
    "journal": N_("Journal"),
    "proposal_id": N_("Booking proposal"),
}

HINTS: Mapping[str, str] = {
    "period": N_("Year and month, e.g. 2024-05"),
    "code": N_("Letters, digits, dots, dashes or underscores"),
}

REQUIRED = N_("Fill in this field.")
INVALID = N_("This value is not valid here.")
_PERIOD_PATTERN = "^[0-9]{4}-(0[1-9]|1[0-2])$"
_MAX_LENGTH = 64


@dataclass(frozen=True)
class Field:
    """One correction field: the payload field, its label, hint, value and error (msgids)."""

    name: str
    label: str
    hint: str
    value: str
    error: str = ""


@functools.cache
def _text_fields(kind: str) -> dict[str, dict[str, Any]]:
    """The kind's top-level text fields and their JSON schemas ({} for an unknown kind).

    Cached: a kind's schema does not change while the process runs, and building it costs
    milliseconds, which a list of failed tasks would pay per row.
    """
    try:
        schema = spec_for(kind).payload_model.model_json_schema()
    except Exception:  # an unknown kind, or a schema pydantic cannot express
        return {}
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    return {n: p for n, p in properties.items() if p.get("type") == "string"}


def fields_for(kind: str, error_code: str | None, payload: Mapping[str, Any]) -> list[Field]:
    """The fields a person may correct for this failure, filled with the current values."""
    wanted = FIELD_OF_ERROR.get(error_code or "")
    properties = _text_fields(kind)
    if wanted is None or wanted not in properties:
        return []
    return [_field(wanted, properties[wanted], str(payload.get(wanted, "")))]


def _field(name: str, schema: Mapping[str, Any], value: str, error: str = "") -> Field:
    hint = HINTS["period"] if schema.get("pattern") == _PERIOD_PATTERN else HINTS["code"]
    return Field(name, LABELS.get(name, name), hint, value, error)


def submitted(form: Mapping[str, Any]) -> dict[str, str]:
    """The correction fields of a posted form, by payload field name."""
    return {
        key[len(FIELD_PREFIX) :]: str(value).strip()
        for key, value in form.items()
        if key.startswith(FIELD_PREFIX) and isinstance(value, str)
    }


def corrected(
    kind: str, error_code: str | None, payload: Mapping[str, Any], values: Mapping[str, str]
) -> tuple[dict[str, Any] | None, list[Field]]:
    """The payload with the corrections, or None and the fields with their errors.

    Only the offered fields are taken from the form; the rest of the payload stays as it
    was. The kind's schema decides what is valid, as it does for a submission.
    """
    offered = fields_for(kind, error_code, payload)
    changes = {f.name: values[f.name] for f in offered if f.name in values}
    candidate = {**payload, **changes}
    errors: dict[str, str] = {}
    for f in offered:
        value = changes.get(f.name, f.value)
        if not value:
            errors[f.name] = REQUIRED
        elif len(value) > _MAX_LENGTH:
            errors[f.name] = INVALID
    if not errors:
        try:
            spec_for(kind).payload_model.model_validate(candidate)
        except ValidationError as exc:
            for problem in exc.errors():
                loc = problem["loc"]
                name = str(loc[0]) if loc else ""
                errors.setdefault(name, INVALID)
    if not errors:
        return candidate, offered
    if not any(f.name in errors for f in offered):
        # The rest of the payload is wrong (it was valid when submitted): say so on the form.
        errors = {f.name: INVALID for f in offered}
    properties = _text_fields(kind)
    shown = [
        _field(f.name, properties[f.name], changes.get(f.name, f.value), errors.get(f.name, ""))
        for f in offered
    ]
    return None, shown
