"""Where assignments stick and exposures are remembered, keyed by experiment and unit.

Two implementations of one interface: :class:`MemoryAssignmentStore` (tests, one process) and
:class:`SqliteAssignmentStore`, the durable one. Invariant: the first writer wins, atomically and
durably, across every process on the host (``INSERT ... ON CONFLICT DO NOTHING``); a multi-host
deployment implements the same three methods on a shared database.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredAssignment:
    experiment_key: str
    unit: str
    """``user:<user_id>`` or ``anon:<anonymous_id>``."""
    variant: str
    phase: int


def user_unit(user_id: str) -> str:
    return f"user:{user_id}"


def anonymous_unit(anonymous_id: str) -> str:
    return f"anon:{anonymous_id}"


class AssignmentStore(Protocol):
    def get(self, experiment_key: str, unit: str) -> StoredAssignment | None: ...

    def put_if_absent(self, assignment: StoredAssignment) -> StoredAssignment:
        """Store ``assignment`` unless one exists for the same phase; return the one in force."""
        ...

    def mark_exposed(self, experiment_key: str, phase: int, anonymous_id: str) -> bool:
        """True the first time a unit is exposed in a phase, False ever after."""
        ...

    def forget_exposure(self, experiment_key: str, phase: int, anonymous_id: str) -> None:
        """Undo :meth:`mark_exposed` when the exposure event could not be delivered."""
        ...


class MemoryAssignmentStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._assignments: dict[tuple[str, str], StoredAssignment] = {}
        self._exposed: set[tuple[str, int, str]] = set()

    def get(self, experiment_key: str, unit: str) -> StoredAssignment | None:
        return self._assignments.get((experiment_key, unit))

    def put_if_absent(self, assignment: StoredAssignment) -> StoredAssignment:
        key = (assignment.experiment_key, assignment.unit)
        with self._lock:
            existing = self._assignments.get(key)
            # An assignment from an earlier phase was made under other weights; the new phase replaces it.
            if existing is not None and existing.phase >= assignment.phase:
                return existing
            self._assignments[key] = assignment
            return assignment

    def mark_exposed(self, experiment_key: str, phase: int, anonymous_id: str) -> bool:
        key = (experiment_key, phase, anonymous_id)
        with self._lock:
            if key in self._exposed:
                return False
            self._exposed.add(key)
            return True

    def forget_exposure(self, experiment_key: str, phase: int, anonymous_id: str) -> None:
        with self._lock:
            self._exposed.discard((experiment_key, phase, anonymous_id))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS assignments (
    experiment_key TEXT NOT NULL,
    unit TEXT NOT NULL,
    variant TEXT NOT NULL,
    phase INTEGER NOT NULL,
    assigned_at TEXT NOT NULL,
    PRIMARY KEY (experiment_key, unit)
);
CREATE TABLE IF NOT EXISTS exposures (
    experiment_key TEXT NOT NULL,
    phase INTEGER NOT NULL,
    anonymous_id TEXT NOT NULL,
    exposed_at TEXT NOT NULL,
    PRIMARY KEY (experiment_key, phase, anonymous_id)
);
"""


class SqliteAssignmentStore:
    """Durable store in one SQLite file in WAL mode, shared by every worker process on the host."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # One connection per thread: sqlite3 connections must not cross threads.
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def get(self, experiment_key: str, unit: str) -> StoredAssignment | None:
        row = (
            self._connection()
            .execute(
                "SELECT variant, phase FROM assignments WHERE experiment_key = ? AND unit = ?",
                (experiment_key, unit),
            )
            .fetchone()
        )
        return None if row is None else StoredAssignment(experiment_key, unit, row[0], row[1])

    def put_if_absent(self, assignment: StoredAssignment) -> StoredAssignment:
        conn = self._connection()
        conn.execute(
            "INSERT INTO assignments (experiment_key, unit, variant, phase, assigned_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (experiment_key, unit) DO UPDATE SET variant = excluded.variant, phase = excluded.phase, "
            "assigned_at = excluded.assigned_at WHERE assignments.phase < excluded.phase",
            (
                assignment.experiment_key,
                assignment.unit,
                assignment.variant,
                assignment.phase,
                datetime.now(UTC).isoformat(),
            ),
        )
        stored = self.get(assignment.experiment_key, assignment.unit)
        assert stored is not None
        return stored

    def mark_exposed(self, experiment_key: str, phase: int, anonymous_id: str) -> bool:
        cursor = self._connection().execute(
            "INSERT INTO exposures (experiment_key, phase, anonymous_id, exposed_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (experiment_key, phase, anonymous_id, datetime.now(UTC).isoformat()),
        )
        return cursor.rowcount == 1

    def forget_exposure(self, experiment_key: str, phase: int, anonymous_id: str) -> None:
        self._connection().execute(
            "DELETE FROM exposures WHERE experiment_key = ? AND phase = ? AND anonymous_id = ?",
            (experiment_key, phase, anonymous_id),
        )
