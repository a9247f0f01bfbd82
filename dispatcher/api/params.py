"""Query and header parameters of the `/v1` API, held to exactly what the document says."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Header, Query, Request
from fastapi.dependencies.models import Dependant
from pydantic import BeforeValidator

from dispatcher.api.models import Id
from dispatcher.api.problems import Problem


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def known_query(request: Request) -> None:
    """422 for a query parameter the operation does not declare.

    Ignoring it would turn a typo or an injection attempt (`status[$ne]=x`) into a wider
    answer than the caller asked for.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    unknown = sorted(set(request.query_params) - _query_names(dependant))
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise Problem(422, "invalid-request", f"unknown query parameter(s): {shown}")


# [0-9], not \d: the regex engine matches every Unicode digit with \d.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: object) -> object:
    """Only an RFC 3339 date-time, as documented (pydantic alone also takes `0.5` as a time)."""
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a time zone")
    return value


Instant = Annotated[datetime, BeforeValidator(_rfc3339)]
Office = Annotated[Id | None, Query(description="support only: the office to look at")]
# The query's spelling of `workers.vocabulary.Severity`: a Literal keeps the OpenAPI document
# as it is (an enum would add a schema); routes decode it with `severity_of`.
Severity = Literal["orange", "red"]
IdempotencyKey = Annotated[
    str | None, Header(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", alias="Idempotency-Key")
]
