"""The demo's failures: one dossier per failure class, and how a person fixes each.

Every failure comes from the simulated package's own state (a closed period, an unknown
journal, a damaged database...). `fix` then does what the instruction tells the person
to do, through the same client the ops CLI uses: correct and restart, cancel, resolve.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.client import Client
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import JOURNALS, PERIODS, VAT_CODES, Planned, company_code
from store import ActionRecord, Role, Store
from workers.accounting.simulated import SimulatedPackage
from workers.vocabulary import TaskStatus

CLOSED = "2024-05"


@dataclass(frozen=True)
class Fault:
    """One failure class: how to provoke it and how a person fixes it."""

    code: str
    prepare: Callable[[SimulatedPackage, str], None]  # (package, company code)
    change: Callable[[dict[str, Any]], dict[str, Any]]  # makes a planned task fail
    fix: str  # restart | restart-corrected | cancel | resolve
    repair: Callable[[SimulatedPackage, str], None]  # what the person does in the package
    role: Role = Role.ADMIN


def fresh_world(
    cluster: Cluster, state: Path, pairs: list[tuple[str, str]]
) -> tuple[Store, SimulatedPackage]:
    """An empty virtual host, database and simulated package, with a company per dossier."""
    settings = cluster.settings
    cluster.reset()
    store = Store.connect(settings.mongo_url, settings.mongo_db)
    store.drop()
    store.ensure_indexes()
    state.mkdir(parents=True, exist_ok=True)
    package = SimulatedPackage(settings.simpackage_path)
    package.reset()
    for office, dossier in pairs:
        package.create_company(company_code(office, dossier), PERIODS, JOURNALS, VAT_CODES)
    return store, package


def _nothing(_package: SimulatedPackage, _code: str) -> None:
    return None


def _replace(**values: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda payload: {**payload, **values}


def _bad_vat(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "lines": [{**payload["lines"][0], "vat_code": "V99"}, *payload["lines"][1:]]}


FAULTS: list[Fault] = [
    Fault(
        "invalid_period",
        lambda p, c: p.close_period(c, CLOSED),
        _replace(period=CLOSED),
        "restart",
        lambda p, c: p.open_period(c, CLOSED),
    ),
    Fault("invalid_journal", _nothing, _replace(journal="JRNX"), "restart-corrected", _nothing),
    Fault("invalid_vat_code", _nothing, _bad_vat, "restart-corrected", _nothing),
    Fault("duplicate_booking", _nothing, _replace(), "resolve", _nothing),
    Fault(
        "package_unreachable",
        lambda p, c: p.inject_fault(c, "unreachable"),
        _replace(),
        "restart",
        lambda p, c: p.inject_fault(c, None),
    ),
    Fault(
        "database_error",
        lambda p, c: p.break_database(c),
        _replace(),
        "restart",
        lambda p, c: p.break_database(c, broken=False),
        Role.SUPPORT,
    ),
    Fault(
        "unknown_error",
        lambda p, c: p.inject_fault(c, "bug"),
        _replace(),
        "cancel",
        lambda p, c: p.inject_fault(c, None),
        Role.SUPPORT,
    ),
]
TYPO = Fault("unknown_dossier_code", _nothing, _replace(), "restart-corrected", _nothing)
BY_CODE = {f.code: f for f in [*FAULTS, TYPO]}


def inject(plan: list[Planned], package: SimulatedPackage) -> dict[int, Fault]:
    """Make one booking per failure class fail, each in its own dossier; positions → fault."""
    chosen: dict[int, Fault] = {}
    used: set[tuple[str, str]] = set()
    faults = iter(FAULTS)
    fault = next(faults, None)
    for index, item in enumerate(plan):
        if fault is None:
            break
        key = (item.office, item.dossier)
        if item.kind != "booking_proposal.process" or key in used or index < len(plan) // 10:
            continue
        earlier = next(
            (
                p
                for p in plan[:index]
                if (p.office, p.dossier) == key and p.kind == "booking_proposal.process"
            ),
            None,
        )
        if fault.code == "duplicate_booking" and earlier is None:
            continue  # a duplicate needs an earlier booking of the same dossier
        used.add(key)
        code = company_code(item.office, item.dossier)
        fault.prepare(package, code)
        payload = fault.change(dict(item.payload))
        if fault.code == "duplicate_booking" and earlier is not None:
            payload = {**payload, "proposal_id": earlier.payload["proposal_id"]}
        plan[index] = Planned(item.office, item.dossier, item.kind, payload, expect_ok=False)
        chosen[index] = fault
        fault = next(faults, None)
    # An activation with a mistyped dossier code, fixed by entering the right one.
    for index, item in enumerate(plan):
        if item.kind == "dossier.activate" and (item.office, item.dossier) not in used:
            typo = {"dossier_code": "TYPO-" + item.payload["dossier_code"]}
            plan[index] = Planned(item.office, item.dossier, item.kind, typo, expect_ok=False)
            chosen[index] = TYPO
            break
    return chosen


def fix_blocked(
    client: Client,
    package: SimulatedPackage,
    store: Store,
    originals: Mapping[str, Planned],
    settle: Callable[[], object],
) -> Counter[str]:
    """Do what each blocking task's instruction says, then act on the task.

    `originals` maps task ids to what the platform meant to submit, for the corrections.
    A fault of a whole company (a damaged database) can block its dossier more than once,
    so this runs until no dossier is blocked or nothing more can be done; `settle` waits
    until what the actions set going has run or blocked again.
    """
    done: Counter[str] = Counter()
    for _round in range(20):
        if not store.dossiers.blocked():
            break
        done += fix_once(client, package, store, originals)
        settle()
    return done


def fix_once(
    client: Client,
    package: SimulatedPackage,
    store: Store,
    originals: Mapping[str, Planned],
    *,
    cancel: Callable[[], bool] = lambda: False,
    records: list[ActionRecord] | None = None,
    wait_s: float = 30.0,
) -> Counter[str]:
    """One pass over the blocked dossiers: repair and act on each failed task once.

    `cancel` may choose to cancel a task (as support) instead of doing what its
    instruction says, as a person who gives up on it would. Each action taken is appended
    to `records` when given; `wait_s` bounds the wait for each decision.
    """
    done: Counter[str] = Counter()
    taken = records if records is not None else []
    for dossier in store.dossiers.blocked():
        task = store.tasks.get(dossier.active or "")
        if task is None or task.status is not TaskStatus.FAILED:
            continue
        fault = BY_CODE.get(str((task.error or {}).get("code")))
        if fault is None or cancel():
            if fault is not None:
                fault.repair(package, company_code(task.office, task.dossier))
            taken.append(client.cancel(task.id, by="demo", wait_s=wait_s))
            done["cancel"] += 1
            continue
        fault.repair(package, company_code(task.office, task.dossier))
        original = originals.get(task.id)
        if fault.fix == "restart-corrected" and original is not None:
            action = client.restart(
                task.id, payload=original.payload, role=fault.role, by="demo", wait_s=wait_s
            )
        elif fault.fix.startswith("restart"):
            action = client.restart(task.id, role=fault.role, by="demo", wait_s=wait_s)
        elif fault.fix == "cancel":
            action = client.cancel(task.id, role=fault.role, by="demo", wait_s=wait_s)
        else:
            action = client.resolve(task.id, role=fault.role, by="demo", wait_s=wait_s)
        taken.append(action)
        done[fault.fix] += 1
    return done
