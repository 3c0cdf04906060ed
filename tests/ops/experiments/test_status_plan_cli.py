"""``funnelstream experiment status`` (one line per alert, exit code for a scheduler) and
``funnelstream experiment plan`` (units and days for an MDE), through the warehouse API's path
(a stand-in for its answer) and through the configured warehouse."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import clickhouse.experiments.warehouse as experiment_warehouse_module
from clickhouse.experiments.results import MetricPlan, PlanResult
from funnelstream.experiments.errors import WarehouseUnavailableError
from funnelstream.experiments.settings import DEFAULT_DEFINITIONS
from ops.experiments.cli import app, parse_share
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_results import full_results
from tests.helpers.experiment_warehouse import experiment_warehouse, load

API = "http://warehouse.invalid:8123"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FS_EXPERIMENTS__WAREHOUSE_API_URL", raising=False)
    monkeypatch.setenv("FS_EXPERIMENTS__DEFINITIONS_PATH", str(DEFAULT_DEFINITIONS))
    monkeypatch.setenv("FS_EXPERIMENTS__BOOTSTRAP_RESAMPLES", "0")


def run(*arguments: str) -> Result:
    return CliRunner().invoke(app, list(arguments), env={"COLUMNS": "80"})


def answering(monkeypatch: pytest.MonkeyPatch, name: str, answer: Any) -> list[Any]:
    """The warehouse API's path, its function ``name`` standing in for the HTTP call; the calls' arguments."""
    monkeypatch.setenv("FS_EXPERIMENTS__WAREHOUSE_API_URL", API)
    calls: list[Any] = []

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(experiment_warehouse_module, name, stand_in)
    return calls


def test_status_prints_one_line_per_alert_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = answering(monkeypatch, "fetch_results_via_api", full_results())
    result = run("status", "segmentation_tool")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines == [
        "segmentation_tool: ALERT sample ratio mismatch in browser = Safari (p = 5.1e-05)",
        "segmentation_tool: ALERT guardrail inference_failure_rate harmed in treatment: lift +80.0%, "
        "past the tolerated 2.0% (increase), p = 0.0001",
    ]
    assert calls[0][0][0] == API and calls[0][0][2] == "segmentation_tool"


def test_status_of_a_healthy_experiment_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    results = full_results(harmed=False)
    assert results.health is not None
    healthy = results.model_copy(update={"alerts": [], "health": results.health.model_copy(update={"dimensions": []})})
    answering(monkeypatch, "fetch_results_via_api", healthy)
    result = run("status", "segmentation_tool")
    assert result.exit_code == 0, result.output
    assert result.output == "segmentation_tool: healthy (2000 units, no alerts)\n"


@pytest.mark.parametrize(
    "failure", [WarehouseUnavailableError("connection refused"), RuntimeError("something unforeseen")]
)
def test_status_that_cannot_be_read_exits_2_never_1(monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    answering(monkeypatch, "fetch_results_via_api", failure)
    result = run("status", "segmentation_tool")
    assert result.exit_code == 2 and "segmentation_tool: ERROR" in result.output


def test_status_of_an_unknown_experiment_exits_2() -> None:
    result = run("status", "nope")
    assert result.exit_code == 2 and "unknown experiment 'nope'" in result.output


def test_status_from_an_export_names_the_contamination(tmp_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=1200, contaminated_share=0.03), 5)
    export = tmp_path / "events.parquet"
    events.to_parquet(export)
    result = run("status", "segmentation_tool", "--events", str(export))
    assert result.exit_code == 1, result.output
    assert re.search(r"^segmentation_tool: ALERT \d+ of \d+ units .* more than one variant", result.output, re.M)


@pytest.mark.parametrize(("text", "share"), [("5%", 0.05), ("0.05", 0.05), (" 2.5% ", 0.025), ("80%", 0.8)])
def test_a_share_is_written_as_a_percentage_or_a_fraction(text: str, share: float) -> None:
    assert parse_share(text, "--mde") == pytest.approx(share)


def stub_plan(mde: float = 0.05) -> PlanResult:
    return PlanResult(
        experiment_key="segmentation_tool",
        source="experiment",
        mde=mde,
        power=0.8,
        alpha=0.05,
        days=14,
        units_per_day=1234.5,
        weights=[0.5, 0.5],
        metrics=[
            MetricPlan(
                metric="inference_failure_rate",
                baseline=0.05,
                per_unit_standard_deviation=0.2179,
                required_units=1_204_123,
                required_days=975.4,
                reachable_mde=0.2345,
            ),
            MetricPlan(
                metric="task_duration_s",
                baseline=None,
                per_unit_standard_deviation=None,
                required_units=None,
                required_days=None,
                reachable_mde=None,
            ),
        ],
    )


def test_plan_through_the_api_accepts_5_percent_and_0_05_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = answering(monkeypatch, "fetch_plan_via_api", stub_plan())
    assert run("plan", "segmentation_tool", "--mde", "5%").exit_code == 0
    assert run("plan", "segmentation_tool", "--mde", "0.05", "--power", "90%", "--days", "28").exit_code == 0
    assert [call[1] for call in calls] == [
        {"mde": 0.05, "power": 0.8, "days": 14.0},
        {"mde": 0.05, "power": 0.9, "days": 28.0},
    ]


def test_plan_prints_a_table_that_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, "fetch_plan_via_api", stub_plan())
    result = run("plan", "segmentation_tool", "--mde", "5%")
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80 and "…" not in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("inference_failure_rate"))
    assert re.search(r"0\.05\s+0\.2179\s+1,204,123\s+975\.4\s+23\.4%", row)
    assert "planned from the experiment's units so far\nnew units per day: 1,234\n" in result.output


def test_plan_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, "fetch_plan_via_api", stub_plan())
    result = run("plan", "segmentation_tool", "--mde", "5%", "--json")
    assert result.exit_code == 0, result.output
    assert PlanResult.model_validate(json.loads(result.output)) == stub_plan()


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["--mde", "five"], "--mde"),
        (["--mde", "5"], "--mde"),
        (["--mde", "0"], "--mde"),
        (["--mde", "-5%"], "--mde"),
        (["--mde", "nan"], "--mde"),
        (["--mde", "5%", "--power", "1"], "--power"),
        (["--mde", "5%", "--power", "40%"], "--power"),
        (["--mde", "5%", "--days", "0"], "--days"),
        (["--mde", "5%", "--days", "1000"], "--days"),
    ],
)
def test_plan_refuses_a_bad_option_with_exit_2_naming_it(arguments: list[str], option: str) -> None:
    result = run("plan", "segmentation_tool", *arguments)
    assert result.exit_code == 2 and option in result.output, result.output


def test_plan_of_an_unreachable_warehouse_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, "fetch_plan_via_api", WarehouseUnavailableError("connection refused"))
    result = run("plan", "segmentation_tool", "--mde", "5%")
    assert result.exit_code == 2 and "connection refused" in result.output


def test_plan_and_status_from_the_configured_warehouse(chdb_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events, _ = simulate(JourneySpec(units=1500, task_time_factor=0.8), 12)
    with experiment_warehouse(chdb_path) as warehouse:
        load(warehouse, [events], "segmentation_tool")
        monkeypatch.setenv("FS_CLICKHOUSE__CHDB_PATH", str(chdb_path))
        monkeypatch.setenv("FS_CLICKHOUSE__DATABASE", warehouse.database)
        # The process's own connection stays open; the command opens the same data path again.
        result = run("plan", "segmentation_tool", "--mde", "10%", "--json")
        status = run("status", "segmentation_tool")
    assert result.exit_code == 0, result.output
    plan = PlanResult.model_validate(json.loads(result.output))
    assert plan.source == "experiment" and plan.mde == 0.1 and plan.metrics
    task = next(m for m in plan.metrics if m.metric == "task_duration_s")
    assert task.required_units is not None and task.required_units > 0
    assert status.exit_code in (0, 1) and status.output.startswith("segmentation_tool: ")
