"""The command line: every command runs a function that exists, and its choices are the enums'."""

from __future__ import annotations

import argparse

import pytest

from dossierflow.cli import command
from dossierflow.parser import LANGUAGES, ROLES, RUN, SEVERITIES, TASK_STATUSES, build_parser
from store import Role
from workers import texts
from workers.vocabulary import Severity, TaskStatus


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [path]
    found: list[tuple[str, ...]] = []
    for name, child in subs[0].choices.items():
        found += _leaves(child, (*path, name))
    return found


def test_the_choices_are_the_enums_values() -> None:
    assert tuple(r.value for r in Role) == ROLES
    assert tuple(s.value for s in TaskStatus) == TASK_STATUSES
    assert tuple(s.value for s in Severity) == SEVERITIES
    assert tuple(texts.LANGUAGES) == LANGUAGES


def test_every_command_names_a_function_that_exists() -> None:
    leaves = _leaves(build_parser())
    assert len(leaves) > 20
    for leaf in leaves:
        parser = build_parser()
        defaults = {RUN: None}
        # Parse only the command words; required options are filled with a dummy value.
        node = parser
        for word in leaf:
            sub = next(a for a in node._actions if isinstance(a, argparse._SubParsersAction))
            node = sub.choices[word]
            defaults.update(node._defaults)
        assert defaults[RUN], leaf
        runner = command(argparse.Namespace(**{RUN: defaults[RUN]}))
        assert callable(runner), leaf


def test_a_command_whose_module_is_missing_fails_loudly() -> None:
    with pytest.raises(ModuleNotFoundError):
        command(argparse.Namespace(**{RUN: "dossierflow.commands.nothing:run"}))


def test_an_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["frobnicate"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
