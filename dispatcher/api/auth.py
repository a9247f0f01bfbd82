"""Who is asking and what they may see: bearer tokens, roles and scopes.

The office always comes from the token's user; only support chooses an office, with the
`office` query parameter. A dossier manager sees only the assigned dossiers, so every
query is narrowed by a `Scope` and a single object outside it answers 404, exactly like
an object that does not exist.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from dispatcher.api.problems import Problem
from store import Role, Store, UserRecord
from store.monitoring import Scope
from store.sessions import Sessions
from store.tokens import Tokens, digest

READERS = frozenset(Role)
SUBMITTERS = frozenset({Role.PLATFORM, Role.ADMIN})
ACTORS = frozenset({Role.ADMIN, Role.DOSSIER_MANAGER, Role.SUPPORT})


@dataclass(frozen=True)
class Principal:
    """An authenticated user and the digest of its token (API) or session (page)."""

    user: UserRecord
    token_digest: str

    @property
    def role(self) -> Role:
        """The user's role."""
        return self.user.role

    def scope(self, office: str | None = None, *, need_office: bool = False) -> Scope:
        """What the user may see; `office` counts only for support (others: their own)."""
        if self.role is Role.SUPPORT:
            if office is None and need_office:
                raise Problem(422, "office-required", "support must pass office=<office id>")
            return Scope(office)
        if self.user.office is None:
            raise Problem(403, "forbidden", "the user belongs to no office")
        dossiers = self.user.dossiers if self.role is Role.DOSSIER_MANAGER else None
        return Scope(self.user.office, tuple(dossiers) if dossiers is not None else None)

    def sees(self, office: str, dossier: str) -> bool:
        """Whether an object of this office and dossier is visible to the user."""
        if self.role is Role.SUPPORT:
            return True
        if office != self.user.office:
            return False
        return self.role is not Role.DOSSIER_MANAGER or dossier in self.user.dossiers

    def require(self, roles: frozenset[Role], what: str) -> None:
        """403 unless the user's role is one of `roles`."""
        if self.role not in roles:
            raise Problem(403, "forbidden", f"a {self.role.value} user may not {what}")

    def csrf_token(self, secret: bytes) -> str:
        """The page's form token: bound to this session, unknown to other sites."""
        return hmac.new(secret, self.token_digest.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, secret: bytes, given: str) -> bool:
        """Whether a posted form token is this session's (any malformed value: False)."""
        wanted = self.csrf_token(secret).encode()
        return hmac.compare_digest(given.encode("utf-8", "replace"), wanted)


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(store: Store, tokens: Tokens, token: str | None) -> Principal:
    """The user of a token; 401 for a missing, unknown or orphaned token."""
    if not token:
        raise Problem(401, "unauthorized", "send Authorization: Bearer <token>")
    user_id = tokens.user_of(token)
    user = store.users.get(user_id) if user_id is not None else None
    if user is None or user.disabled:
        raise Problem(401, "unauthorized", "unknown, expired or revoked token")
    return Principal(user, digest(token))


def authenticate_session(
    store: Store, tokens: Tokens, sessions: Sessions, session_id: str | None
) -> Principal:
    """The user of a page session; 401 once it ended or its token or user did."""
    session = sessions.get(session_id)
    if session is None:
        raise Problem(401, "unauthorized", "log in")
    user_id = tokens.user_of_digest(session.token_digest)
    user = store.users.get(user_id) if user_id == session.user else None
    if user is None or user.disabled:
        sessions.close_digest(session.digest)
        raise Problem(401, "unauthorized", "log in")
    return Principal(user, session.digest)
