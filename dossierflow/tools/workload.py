"""Demo and benchmark workloads: which tasks to submit, in which dossiers (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

PERIODS = [f"2024-{m:02d}" for m in range(1, 13)]
JOURNALS = ["PUR", "SAL", "BNK", "MISC"]
VAT_CODES = ["V21", "V12", "V6", "V0"]


@dataclass(frozen=True)
class Planned:
    """One task to submit."""

    office: str
    dossier: str
    kind: str
    payload: dict[str, Any]
    expect_ok: bool = True


def company_code(office: str, dossier: str) -> str:
    """The dossier code of a demo dossier in the simulated package."""
    return f"{office}-{dossier}"


def dossiers(offices: list[str], count: int) -> list[tuple[str, str]]:
    """`count` dossiers spread evenly over the offices."""
    return [(offices[i % len(offices)], f"d{i:04d}") for i in range(count)]


def demo_tasks(offices: list[str], n_dossiers: int, n_tasks: int, seed: int = 7) -> list[Planned]:
    """A mixed workload: bookings, deletions of earlier bookings, syncs and activations."""
    rng = random.Random(seed)
    targets = dossiers(offices, n_dossiers)
    booked: dict[tuple[str, str], list[str]] = {t: [] for t in targets}
    planned: list[Planned] = []
    for i in range(n_tasks):
        office, dossier = targets[i % len(targets)] if i < len(targets) else rng.choice(targets)
        code = company_code(office, dossier)
        roll = rng.random()
        if i < len(targets):
            planned.append(Planned(office, dossier, "dossier.activate", {"dossier_code": code}))
        elif roll < 0.10 and booked[(office, dossier)]:
            proposal = booked[(office, dossier)].pop(0)
            payload = {"dossier_code": code, "proposal_id": proposal}
            planned.append(Planned(office, dossier, "booking_proposal.delete", payload))
        elif roll < 0.22:
            planned.append(Planned(office, dossier, "dossier.sync", {"dossier_code": code}))
        else:
            proposal = f"p{i:06d}"
            booked[(office, dossier)].append(proposal)
            planned.append(
                Planned(office, dossier, "booking_proposal.process", booking(code, proposal, rng))
            )
    return planned


def booking(code: str, proposal: str, rng: random.Random) -> dict[str, Any]:
    """A valid booking proposal payload."""
    amount = rng.randint(100, 100_000)
    return {
        "dossier_code": code,
        "proposal_id": proposal,
        "period": rng.choice(PERIODS),
        "journal": rng.choice(JOURNALS),
        "lines": [
            {
                "account": "600000",
                "amount": f"{amount / 100:.2f}",
                "vat_code": rng.choice(VAT_CODES),
            },
            {"account": "440000", "amount": f"{-amount / 100:.2f}", "vat_code": "V0"},
        ],
    }
