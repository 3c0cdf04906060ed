"""Check definitions and the run's pass/fail logic, without a warehouse."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import pytest

from clickhouse.qa.checks import CHECKS, Check, Severity, select_checks
from clickhouse.qa.errors import InvalidWindow, UnknownCheck
from clickhouse.qa.runner import CheckResult, Finding, QARun, Status, _finding, run_checks
from clickhouse.queries import parameters_of

WINDOW_PARAMETERS = {"from", "to"}


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
def test_every_check_has_its_sql_with_the_parameters_it_declares(check: Check) -> None:
    sql = check.sql()
    declared = set(parameters_of(sql))
    assert declared == WINDOW_PARAMETERS | set(check.parameters), declared
    for column in ("subject", "value", "affected", "total", "detail"):
        assert f"AS {column}" in sql


def test_thresholds_can_be_overridden_by_name() -> None:
    selected = select_checks(["late_events", "clock_skew"], {"late_events": 0.5})
    assert [c.name for c in selected] == ["late_events", "clock_skew"]
    assert selected[0].threshold == 0.5
    assert selected[1].threshold == next(c for c in CHECKS if c.name == "clock_skew").threshold


def test_an_unknown_check_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownCheck, match="orphan_steps"):
        select_checks(["orphan_step"])
    with pytest.raises(UnknownCheck):
        select_checks([], {"no_such_check": 1.0})


def _result(severity: Severity, status: Status) -> CheckResult:
    return CheckResult(Check("x", "", 0.0, severity), status, [], 1.0)


def test_the_gate_counts_errors_always_and_warnings_on_request() -> None:
    run = QARun(uuid.uuid4(), datetime.now(UTC), datetime.now(UTC), datetime.now(UTC))
    run.results.extend(
        [
            _result(Severity.WARNING, Status.FAIL),
            _result(Severity.ERROR, Status.PASS),
            _result(Severity.WARNING, Status.ERROR),
        ]
    )
    assert [r.status for r in run.gate_failures(Severity.ERROR)] == [Status.ERROR]
    assert len(run.gate_failures(Severity.WARNING)) == 2
    run.results.append(_result(Severity.ERROR, Status.FAIL))
    assert len(run.gate_failures(Severity.ERROR)) == 2


def test_a_nan_value_is_a_finding_not_a_silent_pass() -> None:
    finding = _finding({"subject": "s", "value": float("nan"), "affected": 1, "total": 0, "detail": ""})
    assert math.isinf(finding.value)
    result = CheckResult(Check("x", "", 0.5, Severity.ERROR), Status.FAIL, [finding], 1.0)
    assert result.failing == [finding]


def test_failing_rows_are_those_above_the_threshold() -> None:
    rows = [Finding("a", 0.2, 2, 10, ""), Finding("b", 0.05, 1, 20, ""), Finding("c", 0.1, 1, 10, "")]
    result = CheckResult(Check("x", "", 0.1, Severity.ERROR), Status.FAIL, rows, 1.0)
    assert [f.subject for f in result.failing] == ["a"]


def test_a_window_must_have_zones_and_run_forwards() -> None:
    with pytest.raises(InvalidWindow, match="from"):
        run_checks(None, [], datetime(2026, 1, 2), datetime(2026, 1, 3, tzinfo=UTC))  # type: ignore[arg-type]
    with pytest.raises(InvalidWindow, match="not before"):
        run_checks(None, [], datetime(2026, 1, 3, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))  # type: ignore[arg-type]


def test_every_check_has_a_test_that_plants_its_defect() -> None:
    import re
    from pathlib import Path

    planted = Path(__file__).with_name("test_qa_checks.py").read_text()
    exercised = set(re.findall(r'CHECK\["(\w+)"\]', planted))
    assert exercised == {check.name for check in CHECKS}


def test_freshness_limits_must_escalate() -> None:
    from pydantic import ValidationError

    from clickhouse.qa.settings import QAConfig

    with pytest.raises(ValidationError, match="freshness_down_s"):
        QAConfig(freshness_degraded_s=60, freshness_down_s=30)
