"""Task kinds: the payload schema of each kind and the registry of kind → schema and handler.

Adding a kind is one `register(KindSpec(...))` call: a payload model plus a
handler, nothing else. To keep imports one-way, this module holds the models
and the registry and imports nothing from `workers.handlers`; that module
defines the handlers of the built-in kinds and registers them when it is
imported. Every composition root that runs or validates tasks (the runner, the
dispatcher API) therefore does `import workers.handlers` once, as dramatiq
workers import their actor modules; `spec_for` works from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError
from pydantic_core import ErrorDetails

from workers.accounting.port import AccountingPackage, TaskRef
from workers.errors import InvalidPayload, UnknownKind

Code = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
"""Identifier as the packages use them: dossier codes, proposal ids, journals, accounts."""

# [0-9], not \d: the regex engine matches every Unicode digit with \d.
Period = Annotated[str, Strict(), StringConstraints(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
"""Accounting period, YYYY-MM."""

Amount = Annotated[
    Decimal,
    Field(max_digits=14, decimal_places=2, gt=-(10**12), lt=10**12, allow_inf_nan=False),
]
"""Money with at most two decimals and below a trillion; strings are the exact JSON form."""

Result = dict[str, str | int | bool]
"""What a handler returns: small and JSON-safe, it travels in the result event."""

P = TypeVar("P", bound=BaseModel)

Handler = Callable[[TaskRef, P, AccountingPackage], Result]
"""A handler runs one task of its kind against the package (generic in the payload model)."""

_MAX_LISTED_ERRORS = 10
_MAX_LOC_PART = 40


class Kind(StrEnum):
    """Built-in task kinds."""

    BOOKING_PROPOSAL_PROCESS = "booking_proposal.process"
    BOOKING_PROPOSAL_DELETE = "booking_proposal.delete"
    DOSSIER_SYNC = "dossier.sync"
    DOSSIER_ACTIVATE = "dossier.activate"


class Payload(BaseModel):
    """Base of every payload model: immutable, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BookingLineIn(Payload):
    """One line of a booking proposal."""

    account: Code
    amount: Amount
    vat_code: Code


class ProcessBookingProposal(Payload):
    """Payload of `booking_proposal.process`: book a proposal in the package."""

    dossier_code: Code
    proposal_id: Code
    period: Period
    journal: Code
    lines: Annotated[tuple[BookingLineIn, ...], Field(min_length=1, max_length=500)]


class DeleteBookingProposal(Payload):
    """Payload of `booking_proposal.delete`: remove the booking of a proposal."""

    dossier_code: Code
    proposal_id: Code


class SyncDossier(Payload):
    """Payload of `dossier.sync`: read the company's bookings back."""

    dossier_code: Code


class ActivateDossier(Payload):
    """Payload of `dossier.activate`: link the dossier to its company."""

    dossier_code: Code


@dataclass(frozen=True)
class KindSpec(Generic[P]):
    """Everything the system knows about one kind; `coalescible` merges equal waiting tasks."""

    kind: str
    payload_model: type[P]
    handler: Handler[P]
    coalescible: bool = False

    def validate(self, payload: Mapping[str, object]) -> P:
        """Parse a payload into this kind's model; raises InvalidPayload."""
        try:
            return self.payload_model.model_validate(payload)
        except ValidationError as exc:
            # `from None`: the pydantic error's text echoes input values, which may be personal.
            raise InvalidPayload(_describe(self.kind, exc.errors())) from None


def _loc_part(part: object) -> str:
    """One step of an error location; keys come from the input, so keep them short and plain."""
    text = part if isinstance(part, str) else str(part) if isinstance(part, int) else "?"
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= _MAX_LOC_PART else text[: _MAX_LOC_PART - 1] + "…"


def _describe(kind: str, errors: list[ErrorDetails]) -> str:
    """Readable list of field errors, without the offending values (they may be personal)."""
    listed = [
        f"{'.'.join(_loc_part(p) for p in error['loc']) or 'payload'}: {error['msg']}"
        for error in errors[:_MAX_LISTED_ERRORS]
    ]
    more = len(errors) - len(listed)
    tail = f"; and {more} more" if more > 0 else ""
    return f"invalid payload for {kind}: " + "; ".join(listed) + tail


class Registry:
    """Kind name → KindSpec; the module-level functions use the default instance."""

    def __init__(self) -> None:
        """Start empty."""
        self._specs: dict[str, KindSpec[Any]] = {}

    def register(self, spec: KindSpec[Any]) -> None:
        """Add a kind; registering the same spec again is a no-op, a different one an error."""
        known = self._specs.get(spec.kind)
        if known is not None and known != spec:
            raise ValueError(f"task kind {spec.kind} is already registered")
        self._specs[spec.kind] = spec

    def spec_for(self, kind: str) -> KindSpec[Any]:
        """The spec of a kind; raises UnknownKind."""
        spec = self._specs.get(kind)
        if spec is None:
            raise UnknownKind(f"unknown task kind {_loc_part(kind)}")
        return spec

    def validate_payload(self, kind: str, payload: Mapping[str, object]) -> BaseModel:
        """Parse a payload for a kind; raises UnknownKind or InvalidPayload."""
        model: BaseModel = self.spec_for(kind).validate(payload)
        return model

    def kinds(self) -> list[str]:
        """Registered kind names, sorted."""
        return sorted(self._specs)


REGISTRY = Registry()
"""The registry the runner and the dispatcher use; built-in kinds arrive with workers.handlers."""


def register(spec: KindSpec[Any]) -> None:
    """Add a kind to the default registry."""
    REGISTRY.register(spec)


def spec_for(kind: str) -> KindSpec[Any]:
    """The spec of a kind in the default registry; raises UnknownKind."""
    return REGISTRY.spec_for(kind)


def validate_payload(kind: str, payload: Mapping[str, object]) -> BaseModel:
    """Parse a payload for a kind of the default registry; raises UnknownKind or InvalidPayload."""
    return REGISTRY.validate_payload(kind, payload)


def kinds() -> list[str]:
    """Kinds of the default registry, sorted."""
    return REGISTRY.kinds()
