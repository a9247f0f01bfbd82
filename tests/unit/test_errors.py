"""The error taxonomy: every error type classifies to the right code, severity and retry class."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.errors import (
    DatabaseError,
    DuplicateBooking,
    InvalidJournal,
    InvalidPayload,
    InvalidPeriod,
    InvalidSubmission,
    InvalidVatCode,
    PackageServerError,
    PackageTimeout,
    PackageUnreachable,
    PermanentError,
    RateLimited,
    TaskError,
    TransientError,
    UnknownDossierCode,
    UnknownKind,
    UnreadableMessage,
    classify,
)
from workers.vocabulary import SEVERITY, ErrorCode, Failure, Severity

PERMANENT = [
    (InvalidPeriod, ErrorCode.INVALID_PERIOD, Severity.ORANGE),
    (InvalidJournal, ErrorCode.INVALID_JOURNAL, Severity.ORANGE),
    (InvalidVatCode, ErrorCode.INVALID_VAT_CODE, Severity.ORANGE),
    (DuplicateBooking, ErrorCode.DUPLICATE_BOOKING, Severity.ORANGE),
    (UnknownDossierCode, ErrorCode.UNKNOWN_DOSSIER_CODE, Severity.ORANGE),
    (DatabaseError, ErrorCode.DATABASE_ERROR, Severity.RED),
    (UnreadableMessage, ErrorCode.UNREADABLE_MESSAGE, Severity.RED),
]


def test_every_error_code_has_a_severity() -> None:
    assert set(SEVERITY) == set(ErrorCode)


@pytest.mark.parametrize(("error_type", "code", "severity"), PERMANENT)
def test_permanent_error_classifies_to_its_code_with_facts(
    error_type: type[PermanentError], code: ErrorCode, severity: Severity
) -> None:
    exc = error_type("period 2024-13 is not open", period="2024-13", journal="XYZ")
    failure = classify(exc)
    assert failure == Failure(
        code, severity, False, "period 2024-13 is not open", {"period": "2024-13", "journal": "XYZ"}
    )
    assert exc.severity is severity
    assert isinstance(exc, TaskError)
    assert not isinstance(exc, TransientError)


@pytest.mark.parametrize(
    "error_type", [PackageUnreachable, PackageTimeout, PackageServerError, RateLimited]
)
def test_transient_error_classifies_as_orange_package_unreachable(
    error_type: type[TransientError],
) -> None:
    failure = classify(error_type("package did not answer"))
    assert failure.code is ErrorCode.PACKAGE_UNREACHABLE
    assert failure.severity is Severity.ORANGE
    assert failure.transient
    assert failure.facts == {"error": error_type.__name__}


def test_rate_limited_keeps_the_wait_the_package_asked_for() -> None:
    exc = RateLimited("slow down", retry_after=2.5)
    assert exc.retry_after == 2.5
    assert classify(exc).facts == {"error": "RateLimited", "retry_after": "2.5"}


def test_unknown_exception_is_red_and_keeps_only_its_type_name() -> None:
    failure = classify(KeyError("jan.jansen@example.com"))
    assert failure == Failure(ErrorCode.UNKNOWN_ERROR, Severity.RED, False, "KeyError", {})
    assert "jansen" not in json.dumps(failure.to_dict())


def test_bare_task_error_is_an_unknown_error() -> None:
    assert classify(TaskError("x")).code is ErrorCode.UNKNOWN_ERROR


@pytest.mark.parametrize("error_type", [UnknownKind, InvalidPayload])
def test_invalid_submission_reaching_a_worker_is_an_unreadable_message(
    error_type: type[InvalidSubmission],
) -> None:
    failure = classify(error_type("invalid payload for dossier.sync: dossier_code: Field required"))
    assert failure.code is ErrorCode.UNREADABLE_MESSAGE
    assert failure.severity is Severity.RED
    assert not failure.transient
    assert isinstance(error_type("x"), ValueError)


def test_errors_survive_pickling_with_their_facts() -> None:
    exc = pickle.loads(pickle.dumps(InvalidVatCode("VAT code Z9 does not exist", vat_code="Z9")))
    assert isinstance(exc, InvalidVatCode)
    assert exc.facts == {"vat_code": "Z9"}
    assert str(exc) == "VAT code Z9 does not exist"
    limited = pickle.loads(pickle.dumps(RateLimited("slow down", retry_after=1.0)))
    assert limited.retry_after == 1.0


@given(
    code=st.sampled_from(ErrorCode),
    transient=st.booleans(),
    message=st.text(),
    facts=st.dictionaries(st.text(), st.text()),
)
def test_failure_round_trips_through_json(
    code: ErrorCode, transient: bool, message: str, facts: dict[str, str]
) -> None:
    failure = Failure(code, SEVERITY[code], transient, message, facts)
    assert Failure.from_dict(json.loads(json.dumps(failure.to_dict()))) == failure


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"code": "no_such_code", "severity": "red", "transient": False, "message": ""},
        {"code": "unknown_error", "severity": "purple", "transient": False, "message": ""},
        {"code": "unknown_error", "severity": "red", "transient": "no", "message": ""},
        {"code": "unknown_error", "severity": "red", "transient": False, "message": 3},
        {"code": "unknown_error", "severity": "red", "transient": False, "message": "", "facts": 1},
        {
            "code": "unknown_error",
            "severity": "red",
            "transient": False,
            "message": "",
            "facts": {"a": 1},
        },
    ],
)
def test_malformed_failure_is_rejected_with_value_error(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Failure.from_dict(data)


def test_failure_is_hashable_despite_its_facts_dict() -> None:
    failure = classify(InvalidPeriod("closed", period="2024-01"))
    assert failure in {failure}
