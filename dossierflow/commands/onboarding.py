"""`dossierflow offices ...` and `dossierflow dossiers ...`: setting up an office.

`add` refuses an id that exists (a typo must not overwrite another office's settings);
`add --update` creates or changes it, keeping what is not given, so scripts can rerun it.
Exit codes: 0 done, 1 refused (unknown or existing id), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broker.messages import valid_id
from dossierflow.commands.ops import clean, table
from dossierflow.settings import Settings
from store import Conflict, NotFound, OfficeRecord, Role, Store, UserRecord
from store.records import DossierProfile

Command = Callable[[Settings, argparse.Namespace], int]
# What the accounting packages accept as a dossier code (the payloads' `Code`).
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# One plain address: no display name, no list, nothing a mail header would split on.
_EMAIL = re.compile(r"[^@\s,;<>\"()\[\]]+@[^@\s,;<>\"()\[\]]+\.[^@\s,;<>\"()\[\]]+")


class Refused(Exception):
    """A command refused with a message for the operator and an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _bad(message: str) -> Refused:
    return Refused(message, 2)


def _check_id(what: str, value: str) -> str:
    if not valid_id(value):
        raise _bad(f"bad {what} id {value!r}: 1 to 64 letters, digits, '_' or '-'")
    return value


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Brussels)") from None
    return name


def _check_email(address: str) -> str:
    if address and not _EMAIL.fullmatch(address):
        raise _bad(f"{address!r} is not one plain e-mail address")
    return address


def existing_office(store: Store, office: str) -> OfficeRecord:
    """The office, or a refusal naming the command that creates it."""
    found = store.offices.get(office)
    if found is None:
        raise Refused(
            f"office {clean(office)} does not exist (create it with `dossierflow offices add`)"
        )
    return found


def _commands(run: Callable[[Store, argparse.Namespace], int]) -> Command:
    """A command on the configured database that prints a refusal instead of a traceback."""

    def command(settings: Settings, args: argparse.Namespace) -> int:
        store = Store.connect(settings.mongo_url, settings.mongo_db)
        try:
            return run(store, args)
        except Refused as exc:
            print(f"dossierflow {args.command}: {exc}", file=sys.stderr)
            return exc.code
        finally:
            store.close()

    return command


def _json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def offices_add(store: Store, args: argparse.Namespace) -> int:
    """Create an office; with --update, create or change it."""
    office_id = _check_id("office", args.id)
    given = {
        "name": args.name,
        "timezone": None if args.timezone is None else _check_zone(args.timezone),
        "language": args.language,
        "contact": None if args.contact is None else _check_email(args.contact),
    }
    changes = {k: v for k, v in given.items() if v is not None}
    before = store.offices.get(office_id)
    if before is not None and args.update:
        store.offices.save(replace(before, **changes))
        print(f"office {office_id} updated")
        return 0
    if before is not None:
        raise Refused(f"office {office_id} exists (add --update to change it)")
    missing = [f"--{k}" for k in ("name", "timezone") if k not in changes]
    if missing:
        raise _bad(f"a new office needs {' and '.join(missing)}")
    try:
        store.offices.add(OfficeRecord(office_id, **changes))
    except Conflict:
        raise Refused(f"office {office_id} exists (add --update to change it)") from None
    print(f"office {office_id} created")
    return 0


def offices_list(store: Store, args: argparse.Namespace) -> int:
    """Every office."""
    offices = store.offices.all()
    if args.json:
        _json([asdict(o) for o in offices])
        return 0
    rows = [(o.id, o.name, o.timezone, o.language, o.contact) for o in offices]
    print(table(rows, ("office", "name", "time zone", "language", "contact")))
    print(f"{len(rows)} office(s)")
    return 0


def offices_show(store: Store, args: argparse.Namespace) -> int:
    """One office with its users and how many dossiers it has."""
    office = existing_office(store, args.id)
    users = store.users.find(office=office.id)
    dossiers = store.profiles.of_office(office.id)
    if args.json:
        _json({**asdict(office), "users": [_user(u) for u in users], "dossiers": len(dossiers)})
        return 0
    for name, value in asdict(office).items():
        print(f"{name:>9}: {clean(value)}")
    print(f"{'dossiers':>9}: {len(dossiers)}")
    rows = [(u.id, u.role.value, u.email, u.language, " ".join(u.dossiers)) for u in users]
    print(table(rows, ("user", "role", "e-mail", "language", "dossiers")))
    return 0


def _user(user: UserRecord) -> dict[str, Any]:
    return {**asdict(user), "role": user.role.value, "dossiers": list(user.dossiers)}


def dossiers_add(store: Store, args: argparse.Namespace) -> int:
    """Create a dossier's profile; with --update, create or change it."""
    office = existing_office(store, _check_id("office", args.office)).id
    dossier = _check_id("dossier", args.id)
    if args.code is not None and not _CODE.fullmatch(args.code):
        raise _bad(f"bad dossier code {args.code!r}: 1 to 64 letters, digits, '_', '.' or '-'")
    profiles = store.profiles
    before = profiles.get(office, dossier)
    if before is not None and not args.update:
        raise Refused(f"dossier {dossier} of office {office} exists (add --update to change it)")
    name = args.name if args.name is not None else before.name if before else None
    code = args.code if args.code is not None else before.code if before else None
    if name is None or code is None:
        raise _bad("a new dossier needs --name and --code")
    profile = DossierProfile(office, dossier, name, code)
    if before is not None:
        profiles.save(profile)
    else:
        try:
            profiles.add(profile)
        except Conflict:
            raise Refused(f"dossier {dossier} of office {office} exists") from None
    print(f"dossier {dossier} of office {office} {'updated' if before else 'created'}")
    return 0


def _managers(store: Store, office: str) -> dict[str, list[str]]:
    managers: dict[str, list[str]] = {}
    for user in store.users.find(office=office, role=Role.DOSSIER_MANAGER):
        for dossier in user.dossiers:
            managers.setdefault(dossier, []).append(user.id)
    return managers


def _profile(profile: DossierProfile, managers: dict[str, list[str]]) -> dict[str, Any]:
    return {**asdict(profile), "managers": managers.get(profile.id, [])}


def dossiers_list(store: Store, args: argparse.Namespace) -> int:
    """The dossiers of an office with their codes and managers."""
    office = existing_office(store, args.office).id
    managers = _managers(store, office)
    found = [_profile(p, managers) for p in store.profiles.of_office(office)]
    if args.json:
        _json(found)
        return 0
    rows = [(d["id"], d["name"], d["code"], " ".join(d["managers"])) for d in found]
    print(table(rows, ("dossier", "name", "code", "managers")))
    print(f"{len(rows)} dossier(s)")
    return 0


def dossiers_show(store: Store, args: argparse.Namespace) -> int:
    """One dossier's profile, its managers and whether the sequencer has it blocked."""
    office = existing_office(store, args.office).id
    profile = store.profiles.get(office, args.id)
    if profile is None:
        raise Refused(f"dossier {clean(args.id)} of office {office} does not exist")
    state = store.dossiers.get(f"{office}.{profile.id}")
    shown = {
        **_profile(profile, _managers(store, office)),
        "blocked": bool(state and state.blocked),
    }
    if args.json:
        _json(shown)
        return 0
    for name, value in shown.items():
        text = " ".join(value) if isinstance(value, list) else value
        text = ("no", "yes")[text] if isinstance(text, bool) else text
        print(f"{name:>8}: {clean(text)}")
    return 0


def _assignment(assign: bool) -> Callable[[Store, argparse.Namespace], int]:
    def run(store: Store, args: argparse.Namespace) -> int:
        office = existing_office(store, args.office).id
        if assign and store.profiles.get(office, args.dossier) is None:
            raise Refused(f"dossier {clean(args.dossier)} of office {office} does not exist")
        user = store.users.get(args.user)
        if user is None or user.office != office:
            raise Refused(f"office {office} has no user {clean(args.user)}")
        if user.role is not Role.DOSSIER_MANAGER:
            raise Refused(f"{user.id} is {user.role.value}: only dossier managers are assigned")
        change = store.users.assign if assign else store.users.unassign
        try:
            changed = change(user.id, args.dossier)
        except NotFound as exc:
            raise Refused(str(exc)) from None
        verb = "assigned to" if assign else "unassigned from"
        note = "" if changed else " (already so)"
        print(f"dossier {clean(args.dossier)} {verb} {user.id}{note}")
        return 0

    return run


def cmd_users_add(settings: Settings, args: argparse.Namespace) -> int:
    """`users add`, refusing a user of an office that does not exist."""
    from dossierflow.commands import api

    if args.office and args.role != Role.SUPPORT.value:
        store = Store.connect(settings.mongo_url, settings.mongo_db)
        try:
            existing_office(store, args.office)
        except Refused as exc:
            print(f"dossierflow users add: {exc}", file=sys.stderr)
            return exc.code
        finally:
            store.close()
    return api.users_add(settings, args)


_OFFICES = {"add": offices_add, "list": offices_list, "show": offices_show}
_DOSSIERS = {
    "add": dossiers_add,
    "list": dossiers_list,
    "show": dossiers_show,
    "assign": _assignment(True),
    "unassign": _assignment(False),
}


def cmd_onboarding(settings: Settings, args: argparse.Namespace) -> int:
    """`offices ...` and `dossiers ...`."""
    table_ = _OFFICES if args.command == "offices" else _DOSSIERS
    return _commands(table_[args.onboarding_command])(settings, args)
