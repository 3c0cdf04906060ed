from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from clickhouse.experiments.analysis import AnalysisConfig
from clickhouse.experiments.stats import adjust_comparisons
from funnelstream.experiments.definitions import Experiment
from funnelstream.experiments.settings import DEFAULT_DEFINITIONS
from ops.experiments.cli import app
from ops.experiments.report import render_html, render_terminal
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_results import conversion, results, with_comparisons
from tests.helpers.experiment_warehouse import analyze_events


@pytest.fixture(autouse=True)
def _no_environment_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FS_EXPERIMENTS__WAREHOUSE_API_URL", raising=False)
    monkeypatch.setenv("FS_EXPERIMENTS__BOOTSTRAP_RESAMPLES", "100")


def test_terminal_report_shows_the_numbers(experiment: Experiment, chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=2000, task_time_factor=0.7, contaminated_share=0.03), 3)
    results = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=100))
    console = Console(record=True, width=250)
    render_terminal(results, console)
    text = console.export_text()
    assert "ALERT" in text and "more than one variant" in text
    assert "conversion_save" in text and "task_duration_s" in text and "task_duration_p90_s" in text
    assert "mean_score" in text
    control_units = results.exposures[0].units
    assert re.search(rf"control\s*│\s*{control_units}\s", text)


def test_html_report_has_charts_and_escapes(experiment: Experiment, chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=800), 3)
    results = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=50, sequential=True))
    page = render_html(results)
    assert page.count("<svg") == 2 and "conversion per funnel step" in page
    assert "confidence sequence" in page
    assert "<script" not in page


def test_cli_report_from_an_events_export(tmp_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=1500, task_time_factor=0.7), 9)
    export = tmp_path / "events.parquet"
    events.to_parquet(export)
    html = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "segmentation_tool",
            "--definitions",
            str(DEFAULT_DEFINITIONS),
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
    result = CliRunner().invoke(app, ["report", "nope", "--definitions", str(DEFAULT_DEFINITIONS)])
    assert result.exit_code == 2 and "unknown experiment 'nope'" in result.output


def test_cli_validate_names_bad_fields(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nexperiments:\n  - key: x\n    variants: [{key: a, weight: 1.5}, {key: b, weight: 0}]\n")
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "experiments.x.variants.0.weight" in result.output
    good = CliRunner().invoke(app, ["validate", str(DEFAULT_DEFINITIONS)])
    assert good.exit_code == 0 and "valid" in good.output


def test_the_group_is_mounted_on_the_funnelstream_command() -> None:
    from ops.cli import SERVICE_COMMANDS

    assert ("ops.experiments.cli", "app", "experiment") in SERVICE_COMMANDS


def terminal(results_: object, styles: bool = False) -> str:
    console = Console(record=True, width=250, force_terminal=styles, color_system="standard" if styles else None)
    render_terminal(results_, console)  # type: ignore[arg-type]
    return console.export_text(styles=styles)


def row_of(text: str, metric: str) -> str:
    return next(line for line in text.splitlines() if metric in line and "│" in line)


def test_a_lift_interval_covering_zero_is_never_shown_significant() -> None:
    # The example: 20/400 vs 36/400 was "significant" (absolute test, p = 0.026) next to a lift
    # interval of [-15 %, +175 %]. Now the lift's own test decides, and only a significant row is coloured.
    covering = conversion("conversion_save", (20, 400), (36, 400), role="primary")
    clear = conversion("conversion_tool", (100, 400), (170, 400), role="guardrail")
    page_results = results([covering, clear])
    save, tool = covering.comparisons[0], clear.comparisons[0]
    assert save.lift_ci_low is not None and save.lift_ci_low < 0 and not save.significant and tool.significant

    plain = terminal(page_results)
    assert re.search(
        r"conversion_save\s*│\s*primary\s*│.*│\s*\[-15\.\d%, 175\.\d%\]\s*│\s*0\.1\d\d\s*│\s*–\s*│\s*no\s", plain
    )
    assert re.search(r"conversion_tool\s*│\s*guardrail\s*│.*│\s*yes\s", plain)
    styled = terminal(page_results, styles=True)
    assert "\x1b[1;32m" in row_of(styled, "conversion_tool") and "\x1b[1;32m" not in row_of(styled, "conversion_save")

    page = render_html(page_results)
    assert re.search(r"<tr><td>conversion_save</td><td>primary</td>.*?<td>no</td>", page)
    assert re.search(r'<tr class="significant"><td>conversion_tool</td>', page)
    chart = page[page.index('aria-label="relative lift with intervals"') :]
    save_line = re.search(r"conversion_save \(treatment\)</text><line [^>]*stroke=\"([^\"]+)\"", chart)
    tool_line = re.search(r"conversion_tool \(treatment\)</text><line [^>]*stroke=\"([^\"]+)\"", chart)
    assert save_line is not None and tool_line is not None
    assert save_line.group(1) == "#555" and tool_line.group(1) == "#c0392b"


def test_each_metric_shows_its_role_and_raw_and_adjusted_p() -> None:
    secondary = [
        conversion("conversion_upload", (100, 1000), (136, 1000)),
        conversion("conversion_inference", (100, 1000), (104, 1000)),
        conversion("conversion_score", (100, 1000), (98, 1000)),
    ]
    adjusted = adjust_comparisons([m.comparisons[0] for m in secondary], "holm", 0.05)
    metrics = [with_comparisons(m, [c]) for m, c in zip(secondary, adjusted, strict=True)]
    upload = adjusted[0]
    assert upload.p_value is not None and upload.p_value < 0.05 and not upload.significant
    text = terminal(results([conversion("conversion_save", (100, 1000), (110, 1000), role="primary"), *metrics]))
    row = row_of(text, "conversion_upload")
    assert "secondary" in row and f"{upload.p_value:.3f}" in row and f"{upload.p_value_adjusted:.3f}" in row
    assert re.search(r"│\s*no\s*│", row)
    assert "adjusted for all secondary comparisons together" in text


def test_sequential_results_show_the_sequence_as_the_deciding_numbers() -> None:
    metric = conversion("conversion_save", (100, 1000), (136, 1000), role="primary", sequential=True)
    c = metric.comparisons[0]
    assert c.sequential is not None and c.fixed_horizon is not None
    assert c.fixed_horizon.p_value is not None and c.fixed_horizon.p_value < 0.05 and not c.significant
    text = terminal(results([metric], sequential=True))
    row = row_of(text, "conversion_save")
    assert f"{c.sequential.p_value:.3f}" in row and f"{c.fixed_horizon.p_value:.3f}" not in row
    assert "lift CI, p and significant: confidence sequence" in text
    page = render_html(results([metric], sequential=True))
    assert "confidence sequence (valid at every look)" in page and f"{c.sequential.p_value:.3f}" in page


def test_a_lift_interval_cut_at_minus_100_percent_says_so() -> None:
    metric = conversion("conversion_save", (10, 20), (1, 20), role="primary")
    assert metric.comparisons[0].lift_ci_clamped
    assert "[-100.0% (floor), " in row_of(terminal(results([metric], units=40)), "conversion_save")
