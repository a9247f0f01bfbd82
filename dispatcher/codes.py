"""A payload's dossier code is its own dossier's, never another dossier's of the office.

A task runs against the company its payload's `dossier_code` names. The code the office
registered for another dossier (`dossierflow dossiers add --code`) would have a submitted
task, or a restart with a corrected payload, book into that dossier's company, outside
that dossier's order and out of sight of its managers. A code that no dossier of the
office has is not refused: an activation with a wrong code is fixed by entering the right
one, which the profile may not know yet. Other offices' codes are not looked at: their
connectors reach other packages, and an answer would tell which codes they use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CODE = "dossier_code"
# Code -> the (office, dossier) pairs whose profile has it.
Holders = Mapping[str, Iterable[tuple[str, str]]]


def payload_code(payload: Mapping[str, Any] | None) -> str | None:
    """The dossier code a payload names, if any."""
    code = payload.get(CODE) if isinstance(payload, Mapping) else None
    return code if isinstance(code, str) and code else None


def foreign_code(
    office: str, dossier: str, payload: Mapping[str, Any] | None, holders: Holders
) -> str | None:
    """Why the payload must not run for this dossier, or None."""
    code = payload_code(payload)
    if code is None:
        return None
    owners = {d for o, d in holders.get(code, ()) if o == office}
    if owners and dossier not in owners:
        return f"dossier_code {code!r} belongs to another dossier of this office"
    return None
