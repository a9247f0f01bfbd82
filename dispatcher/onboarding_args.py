"""The command line of `dossierflow offices` and `dossierflow dossiers` (no I/O)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _update(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--update",
        action="store_true",
        help=f"change the {what} if it exists (options not given keep their value)",
    )


def add_parsers(sub: Any, languages: Sequence[str]) -> None:
    """Add the `offices` and `dossiers` parsers with their subcommands."""
    offices = sub.add_parser("offices", help="create, list and show offices")
    osub = offices.add_subparsers(dest="onboarding_command", required=True)
    add = osub.add_parser("add", help="create an office (refused if it exists, unless --update)")
    add.add_argument("--id", required=True)
    add.add_argument("--name", help="display name (needed for a new office)")
    add.add_argument("--timezone", help="IANA time zone, e.g. Europe/Brussels (new office)")
    add.add_argument("--language", choices=languages, help="mails and page (new: nl)")
    add.add_argument("--contact", help="the office's contact e-mail address")
    _update(add, "office")
    _json(osub.add_parser("list", help="every office"))
    show = osub.add_parser("show", help="one office with its users")
    show.add_argument("--id", required=True)
    _json(show)

    dossiers = sub.add_parser("dossiers", help="dossier names, codes and managers")
    dsub = dossiers.add_subparsers(dest="onboarding_command", required=True)
    dadd = dsub.add_parser("add", help="create a dossier (refused if it exists, unless --update)")
    dadd.add_argument("--office", required=True)
    dadd.add_argument("--id", required=True, help="the dossier id the platform submits with")
    dadd.add_argument("--name", help="display name (needed for a new dossier)")
    dadd.add_argument("--code", help="the dossier code in the accounting package (new dossier)")
    _update(dadd, "dossier")
    dlist = dsub.add_parser("list", help="the dossiers of an office")
    dlist.add_argument("--office", required=True)
    _json(dlist)
    dshow = dsub.add_parser("show", help="one dossier with its managers")
    dshow.add_argument("--office", required=True)
    dshow.add_argument("--id", required=True)
    _json(dshow)
    for verb, what in (("assign", "give"), ("unassign", "take")):
        parser = dsub.add_parser(verb, help=f"{what} a dossier manager a dossier")
        parser.add_argument("--office", required=True)
        parser.add_argument("--dossier", required=True)
        parser.add_argument("--user", required=True)
