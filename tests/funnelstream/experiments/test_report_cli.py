from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from funnelstream.experiments.analysis import AnalysisConfig, analyze
from funnelstream.experiments.cli import app
from funnelstream.experiments.definitions import Experiment
from funnelstream.experiments.report import render_html, render_terminal
from funnelstream.experiments.simulate import SimulationSpec, simulate

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_environment_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FS_EXPERIMENTS__WAREHOUSE_API_URL", raising=False)
    monkeypatch.setenv("FS_EXPERIMENTS__BOOTSTRAP_RESAMPLES", "100")


def test_terminal_report_shows_the_numbers(experiment: Experiment) -> None:
    events, _ = simulate(SimulationSpec(units=2000, task_time_factor=0.7, contaminated_share=0.03), 3)
    results = analyze(events, experiment, AnalysisConfig(bootstrap_resamples=100))
    console = Console(record=True, width=250)
    render_terminal(results, console)
    text = console.export_text()
    assert "ALERT" in text and "more than one variant" in text
    assert "conversion_save" in text and "task_duration_s" in text and "task_duration_p90_s" in text
    assert "mean_score" in text
    control_units = results.exposures[0].units
    assert re.search(rf"control\s*│\s*{control_units}\s", text)


def test_html_report_has_charts_and_escapes(experiment: Experiment) -> None:
    events, _ = simulate(SimulationSpec(units=800), 3)
    results = analyze(events, experiment, AnalysisConfig(bootstrap_resamples=50, sequential=True))
    page = render_html(results)
    assert page.count("<svg") == 2 and "conversion per funnel step" in page
    assert "confidence sequence" in page
    assert "<script" not in page


def test_cli_report_from_an_events_export(tmp_path: Path) -> None:
    events, _ = simulate(SimulationSpec(units=1500, task_time_factor=0.7), 9)
    export = tmp_path / "events.parquet"
    events.to_parquet(export)
    html = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "segmentation_tool",
            "--definitions",
            str(ROOT / "experiments.yaml"),
            "--events",
            str(export),
            "--html",
            str(html),
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "Experiment segmentation_tool" in result.output and "task_duration_s" in result.output
    assert "<svg" in html.read_text()


def test_cli_report_unknown_key_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "nope", "--definitions", str(ROOT / "experiments.yaml")])
    assert result.exit_code == 2 and "unknown experiment 'nope'" in result.output


def test_cli_validate_names_bad_fields(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nexperiments:\n  - key: x\n    variants: [{key: a, weight: 1.5}, {key: b, weight: 0}]\n")
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "experiments.x.variants.0.weight" in result.output
    good = CliRunner().invoke(app, ["validate", str(ROOT / "experiments.yaml")])
    assert good.exit_code == 0 and "valid" in good.output


def test_the_group_is_mounted_on_the_funnelstream_command() -> None:
    from funnelstream.cli import SERVICE_COMMANDS

    assert ("funnelstream.experiments.cli", "app", "experiment") in SERVICE_COMMANDS
