"""The data-quality checks: each is a named SQL file, a threshold and a severity, listed in ``checks.yaml``.

Every ``clickhouse/queries/qa_<name>.sql`` returns rows of ``subject, value, affected, total,
detail``. A row whose ``value`` exceeds the check's threshold is a finding; a check with a finding
fails. Values are shares (0..1) unless the description says otherwise, so thresholds read alike.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from clickhouse.qa.errors import UnknownCheck
from clickhouse.queries import QUERIES_DIR


class Severity(enum.StrEnum):
    ERROR = "error"
    """Data is wrong or lost: the run fails and gates the job."""
    WARNING = "warning"
    """Worth a look; fails the run only with ``--fail-on warning``."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    description: str
    threshold: float
    severity: Severity
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """Named query parameters besides the window (``from``, ``to``)."""

    @property
    def query_file(self) -> Path:
        return QUERIES_DIR / f"qa_{self.name}.sql"

    def sql(self) -> str:
        return _read(self.query_file)


@cache
def _read(path: Path) -> str:
    return path.read_text()


CHECKS_FILE = Path(__file__).with_name("checks.yaml")


def load_checks(path: Path = CHECKS_FILE) -> tuple[Check, ...]:
    """The check table, in the order the checks run and are listed."""
    return tuple(
        Check(
            entry["name"],
            entry["description"],
            float(entry["threshold"]),
            Severity(entry["severity"]),
            entry.get("parameters", {}),
        )
        for entry in yaml.safe_load(path.read_text())
    )


CHECKS = load_checks()


def select_checks(
    names: Iterable[str] = (), thresholds: Mapping[str, float] | None = None, checks: Iterable[Check] = CHECKS
) -> list[Check]:
    """The checks named (all when none are), with threshold overrides applied."""
    by_name = {check.name: check for check in checks}
    known = sorted(by_name)
    wanted = list(names) or list(by_name)
    for name in [*wanted, *(thresholds or {})]:
        if name not in by_name:
            raise UnknownCheck(name, known)
    overrides = thresholds or {}
    return [
        replace(by_name[name], threshold=overrides[name]) if name in overrides else by_name[name] for name in wanted
    ]
