"""A simulated accounting package whose state lives in one SQLite file shared by many processes.

Every failure class is real: it comes from the package's own state (closed
periods, unknown journals and VAT codes, live bookings, unknown dossier codes,
broken databases, an unreachable window), never from a dice roll. Each port call
is logged in `executions` with wall-clock start and end, which `check_order`
reads to prove ordering, parallelism and exactly-once booking.

Several connector processes share the file (see `sqlitefile`); every call
does its checks and its writes in one `BEGIN IMMEDIATE` transaction, so two
processes racing on one idempotency key still make one booking.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from workers.accounting.ordercheck import Execution, OrderReport, order_report
from workers.accounting.port import Booking, BookingLine, TaskRef
from workers.accounting.sqlitefile import SqliteFile, translated
from workers.errors import (
    DatabaseError,
    DuplicateBooking,
    InvalidJournal,
    InvalidPeriod,
    InvalidVatCode,
    PackageUnreachable,
    PermanentError,
    TransientError,
    UnknownDossierCode,
)

__all__ = ["Execution", "OrderReport", "SimulatedPackage"]

T = TypeVar("T")

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS companies (
    code TEXT PRIMARY KEY, periods_open TEXT NOT NULL, journals TEXT NOT NULL,
    vat_codes TEXT NOT NULL, database_broken INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS bookings (
    booking_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE,
    dossier_code TEXT NOT NULL, proposal_id TEXT NOT NULL, period TEXT NOT NULL,
    journal TEXT NOT NULL, lines TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
-- Only live bookings hold a proposal: once deleted it may be booked again under a new key.
CREATE UNIQUE INDEX IF NOT EXISTS bookings_live_proposal
    ON bookings (dossier_code, proposal_id) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS activations (
    task_id TEXT PRIMARY KEY, dossier_code TEXT NOT NULL, office TEXT NOT NULL,
    dossier TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY, task_id TEXT NOT NULL, office TEXT NOT NULL, dossier TEXT NOT NULL,
    kind TEXT NOT NULL, attempt INTEGER NOT NULL, operation TEXT NOT NULL,
    started_at REAL NOT NULL, ended_at REAL, outcome TEXT);
-- Faults injected per company by tests and the demo: see FAULTS.
CREATE TABLE IF NOT EXISTS faults (code TEXT PRIMARY KEY, fault TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (
    id INTEGER PRIMARY KEY CHECK (id = 1), unreachable_until REAL NOT NULL);
INSERT OR IGNORE INTO settings (id, unreachable_until) VALUES (1, 0);
COMMIT;
"""
_BOOKING_COLUMNS = "booking_id, idempotency_key, dossier_code, proposal_id, period, journal, lines"
_EXECUTION_COLUMNS = (
    "id, task_id, office, dossier, kind, attempt, operation, started_at, ended_at, outcome"
)


def _row_to_booking(row: Sequence[str]) -> Booking:
    """Build a Booking from a row selected with _BOOKING_COLUMNS."""
    lines = tuple(
        BookingLine(item["account"], Decimal(item["amount"]), item["vat_code"])
        for item in json.loads(row[6])
    )
    return Booking(row[0], row[1], row[2], row[3], row[4], row[5], lines)


# unreachable: this company's server does not answer (transient, for as long as it lasts);
# bug: the package fails in a way nobody classified; crash: the connector process dies
# while handling the company (what a poison message does), exit status 70.
FAULTS = ("unreachable", "bug", "crash")


def _injected_fault(conn: sqlite3.Connection, code: str) -> None:
    row = conn.execute("SELECT fault FROM faults WHERE code = ?", (code,)).fetchone()
    if row is None:
        return
    if row[0] == "unreachable":
        raise PackageUnreachable(f"the package of company {code} does not answer")
    if row[0] == "bug":
        raise RuntimeError("simulated unclassified failure")
    if row[0] == "crash":
        os._exit(70)


def _company(conn: sqlite3.Connection, code: str) -> tuple[set[str], set[str], set[str]]:
    """Return (open periods, journals, VAT codes) of a usable company, or raise why not."""
    _injected_fault(conn, code)
    row = conn.execute(
        "SELECT periods_open, journals, vat_codes, database_broken FROM companies WHERE code = ?",
        (code,),
    ).fetchone()
    if row is None:
        raise UnknownDossierCode(f"no company with dossier code {code}", dossier_code=code)
    if row[3]:
        raise DatabaseError(f"the database of company {code} is damaged", dossier_code=code)
    return set(json.loads(row[0])), set(json.loads(row[1])), set(json.loads(row[2]))


def _book(conn: sqlite3.Connection, draft: Booking) -> Booking:
    """Check a booking against the company and insert it, inside the caller's transaction."""
    periods, journals, vat_codes = _company(conn, draft.dossier_code)
    sql = f"SELECT {_BOOKING_COLUMNS} FROM bookings WHERE idempotency_key = ?"
    row = conn.execute(sql, (draft.idempotency_key,)).fetchone()
    if row is not None:  # a redelivered task: answer as the first time, whatever changed since
        return _row_to_booking(row)
    if draft.period not in periods:
        raise InvalidPeriod(f"period {draft.period} is not open", period=draft.period)
    if draft.journal not in journals:
        raise InvalidJournal(f"journal {draft.journal} does not exist", journal=draft.journal)
    for code in (line.vat_code for line in draft.lines):
        if code not in vat_codes:
            raise InvalidVatCode(f"VAT code {code} does not exist", vat_code=code)
    sql = "SELECT 1 FROM bookings WHERE dossier_code = ? AND proposal_id = ? AND deleted = 0"
    if conn.execute(sql, (draft.dossier_code, draft.proposal_id)).fetchone():
        raise DuplicateBooking(
            f"proposal {draft.proposal_id} is already booked", proposal_id=draft.proposal_id
        )
    lines = [
        {"account": x.account, "amount": str(x.amount), "vat_code": x.vat_code} for x in draft.lines
    ]
    conn.execute(
        f"INSERT INTO bookings ({_BOOKING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            draft.booking_id,
            draft.idempotency_key,
            draft.dossier_code,
            draft.proposal_id,
            draft.period,
            draft.journal,
            json.dumps(lines),
        ),
    )
    return draft


class SimulatedPackage:
    """Port implementation backed by one SQLite file, plus an admin API for tests and demos."""

    def __init__(
        self,
        path: str | Path,
        latency: tuple[float, float] = (0.0, 0.0),
        rng_seed: int | None = None,
    ) -> None:
        """Open (creating if needed) the package at `path`; each call sleeps within `latency`."""
        if not 0.0 <= latency[0] <= latency[1]:
            raise ValueError("latency must be (low, high) with 0 <= low <= high")
        self._latency = latency
        self._rng = random.Random(rng_seed)
        self._db = SqliteFile(path, _SCHEMA)

    def close(self) -> None:
        """Close every connection this process opened; later calls open new ones."""
        self._db.close()

    def __enter__(self) -> SimulatedPackage:
        """Use as a context manager that closes on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the package."""
        self.close()

    # -- port --------------------------------------------------------------------------

    def _call(self, operation: str, ref: TaskRef, work: Callable[[sqlite3.Connection], T]) -> T:
        """Log the call, wait the latency, do the work in one transaction, log the outcome."""
        with translated(), self._db.transaction(write=True) as conn:
            row = (ref.task_id, ref.office, ref.dossier, ref.kind, ref.attempt, operation)
            cursor = conn.execute(
                "INSERT INTO executions (task_id, office, dossier, kind, attempt, operation,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*row, time.time()),
            )
            execution_id = cursor.lastrowid
        outcome = "error"
        try:
            low, high = self._latency
            if high > 0:
                time.sleep(self._rng.uniform(low, high))
            with translated(), self._db.transaction(write=True) as conn:
                until = conn.execute("SELECT unreachable_until FROM settings").fetchone()[0]
                if time.time() < until:
                    raise PackageUnreachable("simulated package is unreachable")
                result = work(conn)
            outcome = "ok"
            return result
        except TransientError:
            outcome = "transient"
            raise
        except PermanentError as exc:
            outcome = exc.code.value
            raise
        finally:
            with translated(), self._db.transaction(write=True) as conn:
                conn.execute(
                    "UPDATE executions SET ended_at = ?, outcome = ? WHERE id = ?",
                    (time.time(), outcome, execution_id),
                )

    def book(
        self,
        ref: TaskRef,
        *,
        dossier_code: str,
        proposal_id: str,
        period: str,
        journal: str,
        lines: Sequence[BookingLine],
    ) -> Booking:
        """Book a proposal once per idempotency key; see the port for the contract."""
        key = ref.idempotency_key
        draft = Booking(
            uuid.uuid4().hex, key, dossier_code, proposal_id, period, journal, tuple(lines)
        )
        return self._call("book", ref, lambda conn: _book(conn, draft))

    def delete_booking(self, ref: TaskRef, dossier_code: str, proposal_id: str) -> bool:
        """Mark the live booking of a proposal deleted; False when there is none."""

        def work(conn: sqlite3.Connection) -> bool:
            _company(conn, dossier_code)
            cursor = conn.execute(
                "UPDATE bookings SET deleted = 1"
                " WHERE dossier_code = ? AND proposal_id = ? AND deleted = 0",
                (dossier_code, proposal_id),
            )
            return cursor.rowcount > 0

        return self._call("delete_booking", ref, work)

    def sync(self, ref: TaskRef, dossier_code: str) -> int:
        """Count the live bookings of the company."""

        def work(conn: sqlite3.Connection) -> int:
            _company(conn, dossier_code)
            sql = "SELECT COUNT(*) FROM bookings WHERE dossier_code = ? AND deleted = 0"
            count: int = conn.execute(sql, (dossier_code,)).fetchone()[0]
            return count

        return self._call("sync", ref, work)

    def activate(self, ref: TaskRef, dossier_code: str) -> None:
        """Record that the dossier is linked to the company (once per task)."""

        def work(conn: sqlite3.Connection) -> None:
            _company(conn, dossier_code)
            conn.execute(
                "INSERT OR IGNORE INTO activations (task_id, dossier_code, office, dossier)"
                " VALUES (?, ?, ?, ?)",
                (ref.task_id, dossier_code, ref.office, ref.dossier),
            )

        self._call("activate", ref, work)

    # -- admin API (tests and demo; not part of the port) ------------------------------

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one admin statement in its own write transaction; returns the row count."""
        with self._db.transaction(write=True) as conn:
            return conn.execute(sql, params).rowcount

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Run one admin query (rows are sqlite tuples)."""
        return self._db.connection().execute(sql, params).fetchall()

    def create_company(
        self,
        code: str,
        periods_open: Iterable[str],
        journals: Iterable[str],
        vat_codes: Iterable[str],
    ) -> None:
        """Create or replace the ledgers of a company; a broken database stays broken."""
        lists = [json.dumps(sorted(set(x))) for x in (periods_open, journals, vat_codes)]
        self._write(
            "INSERT INTO companies (code, periods_open, journals, vat_codes) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (code) DO UPDATE SET periods_open = excluded.periods_open,"
            " journals = excluded.journals, vat_codes = excluded.vat_codes",
            (code, *lists),
        )

    def _change_periods(self, code: str, change: Callable[[set[str]], None]) -> None:
        """Read-modify-write the open periods of a company under the write lock."""
        with self._db.transaction(write=True) as conn:
            row = conn.execute("SELECT periods_open FROM companies WHERE code = ?", (code,))
            found = row.fetchone()
            if found is None:
                raise KeyError(code)
            periods = set(json.loads(found[0]))
            change(periods)
            conn.execute(
                "UPDATE companies SET periods_open = ? WHERE code = ?",
                (json.dumps(sorted(periods)), code),
            )

    def close_period(self, code: str, period: str) -> None:
        """Close a period: bookings in it fail with InvalidPeriod."""
        self._change_periods(code, lambda periods: periods.discard(period))

    def open_period(self, code: str, period: str) -> None:
        """Open a period (what the accountant does to fix an InvalidPeriod)."""
        self._change_periods(code, lambda periods: periods.add(period))

    def break_database(self, code: str, broken: bool = True) -> None:
        """Damage (or repair) a company's database: every call on it raises DatabaseError."""
        sql = "UPDATE companies SET database_broken = ? WHERE code = ?"
        if self._write(sql, (int(broken), code)) == 0:
            raise KeyError(code)

    def inject_fault(self, code: str, fault: str | None) -> None:
        """Give a company one of FAULTS, or none; every call on it then shows the fault."""
        if fault is None:
            self._write("DELETE FROM faults WHERE code = ?", (code,))
            return
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        self._write("INSERT OR REPLACE INTO faults (code, fault) VALUES (?, ?)", (code, fault))

    def set_unreachable(self, seconds: float) -> None:
        """Make every call fail with PackageUnreachable for `seconds` (0 = reachable now)."""
        until = time.time() + seconds if seconds > 0 else 0.0
        self._write("UPDATE settings SET unreachable_until = ?", (until,))

    def bookings(self, include_deleted: bool = False) -> list[Booking]:
        """Every (live) booking, in insertion order."""
        where = "" if include_deleted else " WHERE deleted = 0"
        rows = self._read(f"SELECT {_BOOKING_COLUMNS} FROM bookings{where} ORDER BY rowid")
        return [_row_to_booking(row) for row in rows]

    def booking_count(self, idempotency_key: str) -> int:
        """Bookings ever made under a key, deleted ones included (1 is the only right answer)."""
        sql = "SELECT COUNT(*) FROM bookings WHERE idempotency_key = ?"
        count = self._read(sql, (idempotency_key,))[0][0]
        return int(count)

    def activations(self) -> list[tuple[str, str]]:
        """(task id, dossier code) of every recorded activation."""
        rows = self._read("SELECT task_id, dossier_code FROM activations ORDER BY rowid")
        return [(str(task), str(code)) for task, code in rows]

    def executions(self) -> list[Execution]:
        """Every logged port call, oldest first."""
        rows = self._read(f"SELECT {_EXECUTION_COLUMNS} FROM executions ORDER BY id")
        return [Execution(*row) for row in rows]

    def reset(self) -> None:
        """Delete every company, booking, activation and execution; make the package reachable."""
        with self._db.transaction(write=True) as conn:
            for table in ("companies", "bookings", "activations", "executions", "faults"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("UPDATE settings SET unreachable_until = 0")

    def check_order(
        self,
        expected: Mapping[tuple[str, str], Sequence[str]],
        expect_ok: Set[str] | None = None,
    ) -> OrderReport:
        """Compare the execution log with the submission order per (office, dossier)."""
        booked = {
            str(k): int(n)
            for k, n in self._read(
                "SELECT idempotency_key, COUNT(*) FROM bookings GROUP BY idempotency_key"
            )
        }
        double = sum(1 for n in booked.values() if n > 1)
        return order_report(self.executions(), expected, expect_ok, booked, double)
