"""`dossierflow api` serves the HTTP API and the page; `dossierflow users` manages users."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from broker.messages import ID_FORM, valid_id
from dossierflow.settings import Settings, SettingsError
from store import Role, Store, UserRecord

Command = Callable[[Settings, argparse.Namespace], int]


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the API and the monitoring page until SIGTERM or SIGINT."""
    import uvicorn

    from dispatcher.api.app import create_app
    from dispatcher.api.changes import ChangeFeed
    from dispatcher.api.guard import Door

    try:
        Door.of(settings)  # a missing CSRF secret: said before anything connects
    except SettingsError as exc:
        print(f"dossierflow api: {exc}", file=sys.stderr)
        return 2
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    store.ensure_indexes()
    changes = ChangeFeed(settings.amqp_url).start()
    app = create_app(settings, store, changes=changes)
    app.state.page_snapshots.warm([o.id for o in store.offices.all()])
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_config=None, ws="none")
    finally:
        changes.close()
        app.state.service.clients.close()
        store.close()
    return 0


def _bad_ids(args: argparse.Namespace) -> str | None:
    for value in [args.id, args.office or "x", *(args.dossier or [])]:
        if not valid_id(value):
            return f"{value!r} is not an id ({ID_FORM})"
    return None


def users_add(settings: Settings, args: argparse.Namespace) -> int:
    """Create or replace a user."""
    role = Role(args.role)
    problem = _bad_ids(args)
    if problem is None and role is not Role.SUPPORT and not args.office:
        problem = f"role {role.value} needs --office"
    if problem is not None:
        print(f"dossierflow users add: {problem}", file=sys.stderr)
        return 2
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    try:
        store.users.save(
            UserRecord(
                id=args.id,
                office=None if role is Role.SUPPORT else args.office,
                role=role,
                email=args.email,
                language=args.language,
                dossiers=tuple(args.dossier or ()),
            )
        )
    finally:
        store.close()
    print(f"user {args.id} saved ({role.value})")
    return 0


def users_token(settings: Settings, args: argparse.Namespace) -> int:
    """Issue a new token for a user and print it once; earlier tokens stop working."""
    days = args.days if args.days is not None else settings.token_days
    if days <= 0:
        print("dossierflow users token: --days must be positive", file=sys.stderr)
        return 2
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    try:
        user = store.users.get(args.id)
        if user is None or user.disabled:
            why = "is disabled (users add enables it again)" if user else "does not exist"
            print(f"dossierflow users token: user {args.id} {why}", file=sys.stderr)
            return 1
        tokens = store.tokens
        token = tokens.issue(args.id, timedelta(days=days))
        print(token)
        expires = tokens.expires_at(token)
        print(f"expires {expires:%Y-%m-%d %H:%M} UTC" if expires else "", file=sys.stderr)
    finally:
        store.close()
    return 0


def users_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Invalidate the user's tokens and page sessions at once; `disable` also bars new ones."""
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    try:
        user = store.users.get(args.id)
        if user is None:
            print(f"dossierflow users {args.users_command}: no user {args.id}", file=sys.stderr)
            return 1
        if args.users_command == "disable":
            store.users.save(replace(user, disabled=True))
        count = store.tokens.revoke(args.id)
    finally:
        store.close()
    done = "disabled" if args.users_command == "disable" else "revoked"
    print(f"user {args.id}: {count} token(s) {done}; their page sessions ended")
    return 0
