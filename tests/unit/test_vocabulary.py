"""The shared vocabulary: typed once, decoded where it enters, ids checked by one function."""

from __future__ import annotations

import ast
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.messages import ID_PATTERN, valid_id
from dispatcher.api import params
from dispatcher.inbound import reported
from store.records import TaskRecord
from workers import vocabulary
from workers.vocabulary import (
    SEVERITY,
    ErrorCode,
    Failure,
    Severity,
    TaskStatus,
    severity_of,
    worst,
)


def test_the_vocabulary_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(vocabulary.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {*sys.stdlib_module_names, "__future__"}, imported


@pytest.mark.parametrize("code", list(ErrorCode))
def test_a_failure_made_of_a_code_takes_the_codes_severity(code: ErrorCode) -> None:
    failure = Failure.of(code, "why", period="2026-13")
    assert (failure.severity, failure.transient) == (SEVERITY[code], False)
    assert failure.to_dict() == {
        "code": code.value,
        "severity": SEVERITY[code].value,
        "transient": False,
        "message": "why",
        "facts": {"period": "2026-13"},
    }


def test_a_reported_failure_gets_its_severity_from_its_code_not_from_the_connector() -> None:
    lying = Failure(ErrorCode.DATABASE_ERROR, Severity.ORANGE, False, "x", {"a": "b"})
    assert reported(lying.to_dict()) == Failure.of(ErrorCode.DATABASE_ERROR, "x", a="b")


@pytest.mark.parametrize("report", [None, "text", {"code": "no_such_code"}, {"transient": 1}])
def test_an_unreadable_report_decodes_to_a_red_unknown_error(report: Any) -> None:
    failure = reported(report)
    assert (failure.code, failure.severity) == (ErrorCode.UNKNOWN_ERROR, Severity.RED)


def test_severity_of_names_a_severity_or_none() -> None:
    assert severity_of("red") is Severity.RED and severity_of(Severity.ORANGE) is Severity.ORANGE
    assert [severity_of(v) for v in ("", "purple", None, 1, {"a": 1})] == [None] * 5


def test_the_worst_severity_is_the_stripe_red_before_orange() -> None:
    assert worst([]) is None
    assert worst([Severity.ORANGE, Severity.ORANGE]) is Severity.ORANGE
    assert worst([Severity.ORANGE, Severity.RED]) is Severity.RED


def test_the_apis_severity_parameter_spells_the_vocabularys_severities() -> None:
    assert set(get_args(params.Severity)) == {s.value for s in Severity}


def test_a_task_records_severity_is_decoded_from_its_stored_error() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    task = TaskRecord("t", "o", "d", "k", {}, TaskStatus.FAILED, now)
    assert task.severity is None
    task.error = {"code": "database_error", "severity": "red"}
    assert task.severity is Severity.RED
    task.error = {"code": "\x1b[2J", "severity": "\x1b[2J"}
    assert task.severity is None


@given(st.one_of(st.text(max_size=70), st.from_regex(ID_PATTERN, fullmatch=True)))
def test_valid_id_is_the_pattern_the_schemas_use(value: str) -> None:
    assert valid_id(value) == (re.fullmatch(ID_PATTERN, value) is not None)


def test_valid_id_refuses_what_is_not_a_string() -> None:
    assert not any(valid_id(v) for v in (None, 1, b"abc", ["a"]))
    assert valid_id("office_1-a") and not valid_id("a.b") and not valid_id("a" * 65)
