"""The experiment reports: the terminal tables (80 columns), the HTML page and the CLI commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from clickhouse.experiments.analysis import AnalysisConfig
from clickhouse.experiments.stats import adjust_comparisons
from clickhouse.workspace.charts import plotly_script
from funnelstream.experiments.definitions import Experiment
from funnelstream.experiments.settings import DEFAULT_DEFINITIONS
from ops.experiments.cli import app
from ops.experiments.report import FLOOR_NOTE, render_html, render_terminal
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_results import conversion, full_results, results, with_comparisons
from tests.helpers.experiment_warehouse import analyze_events
from tests.helpers.figures import embedded_figures, without_charts


@pytest.fixture(autouse=True)
def _no_environment_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FS_EXPERIMENTS__WAREHOUSE_API_URL", raising=False)
    monkeypatch.setenv("FS_EXPERIMENTS__BOOTSTRAP_RESAMPLES", "100")


def test_terminal_report_shows_the_numbers(experiment: Experiment, chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=2000, task_time_factor=0.7, contaminated_share=0.03), 3)
    results = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=100))
    text = terminal(results)
    assert "ALERT" in text and "more than one variant" in text
    assert "conversion_save" in text and "task_duration_s" in text and "task_duration_p90_s" in text
    assert "mean_score" in text
    assert_fits_80_columns(text)
    control_units = results.exposures[0].units
    assert re.search(rf"^control\s+{control_units}\s", table(text, "Exposures")["control"])
    assert "task_duration_p90_s" in table(text, "Absolute difference")


def test_html_report_has_charts_and_escapes(experiment: Experiment, chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=800), 3)
    results = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=50, sequential=True))
    page = render_html(results)
    figures = embedded_figures(page)
    funnel = figures["experiment-funnel"]["data"]
    assert [trace["name"] for trace in funnel] == results.variants
    assert funnel[0]["y"] == [metric.arms[0].value for metric in results.conversion]
    assert figures["experiment-lift"]["data"]
    # Lift over time: a chart per timeline (cumulative, by exposure day) with a lift to draw.
    timelines = sum(
        any(p.relative_lift is not None for p in points)
        for t in results.timeline
        for points in (t.cumulative, t.by_exposure_day)
    )
    assert timelines and len([key for key in figures if key.startswith("lift-")]) == timelines
    titles = [figure["layout"]["title"]["text"] for figure in figures.values()]
    assert "cumulative lift of task_duration_s (treatment vs control)" in titles
    assert "confidence sequence" in page
    # The library once, inline; no other script and nothing drawn by hand.
    assert page.count(plotly_script()) == 1
    assert "<script" not in without_charts(page) and "<svg" not in without_charts(page)


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
    assert embedded_figures(html.read_text())["experiment-funnel"]["data"]


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


def terminal(results_: object, styles: bool = False, width: int = 80) -> str:
    console = Console(record=True, width=width, force_terminal=styles, color_system="standard" if styles else None)
    render_terminal(results_, console)  # type: ignore[arg-type]
    return console.export_text(styles=styles)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def table(text: str, title: str) -> dict[str, str]:
    """The rows of the table whose title starts with ``title``, by their first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if ANSI.sub("", line).startswith(title))
    rule = next(i for i in range(start, len(lines)) if ANSI.sub("", lines[i]).startswith("─"))
    rows = {}
    for line in lines[rule + 1 :]:
        plain = ANSI.sub("", line)
        if not plain.strip() or plain[0].isupper() or "  " not in plain:
            break
        rows[plain.split()[0]] = line
    return rows


def flat(text: str) -> str:
    """The text with its line breaks undone: the terminal wraps sentences at 80 columns."""
    return " ".join(text.split())


def assert_fits_80_columns(text: str) -> None:
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text


def row_of(text: str, metric: str, title: str = "Relative lift") -> str:
    return table(text, title)[metric]


def test_a_lift_interval_covering_zero_is_never_shown_significant() -> None:
    # The example: 20/400 vs 36/400 was "significant" (absolute test, p = 0.026) next to a lift
    # interval of [-15 %, +175 %]. Now the lift's own test decides, and only a significant row is coloured.
    covering = conversion("conversion_save", (20, 400), (36, 400), role="primary")
    clear = conversion("conversion_tool", (100, 400), (170, 400), role="guardrail")
    page_results = results([covering, clear])
    save, tool = covering.comparisons[0], clear.comparisons[0]
    assert save.lift_ci_low is not None and save.lift_ci_low < 0 and not save.significant and tool.significant

    plain = terminal(page_results)
    assert re.search(r"conversion_save\s+primary\s", row_of(plain, "conversion_save", "Values per arm"))
    assert re.search(r"conversion_tool\s+guardrail\s", row_of(plain, "conversion_tool", "Values per arm"))
    assert re.search(r"\s\[-15\.\d%, 175\.\d%\]\s+0\.1\d\d\s+–\s+no\s*$", row_of(plain, "conversion_save"))
    assert re.search(r"\syes\s*$", row_of(plain, "conversion_tool"))
    styled = terminal(page_results, styles=True)
    assert "\x1b[1;32m" in row_of(styled, "conversion_tool") and "\x1b[1;32m" not in row_of(styled, "conversion_save")

    page = render_html(page_results)
    assert re.search(r"<tr><td>conversion_save</td><td>primary</td>.*?<td>no</td>", page)
    assert re.search(r'<tr class="significant"><td>conversion_tool</td>', page)
    (forest,) = embedded_figures(page)["experiment-lift"]["data"]
    # Only the significant comparison is a filled point; both keep their deciding interval.
    assert dict(zip(forest["y"], forest["marker"]["symbol"], strict=True)) == {
        "conversion_save": "circle-open",
        "conversion_tool": "circle",
    }
    assert forest["x"] == [save.relative_lift, tool.relative_lift]
    assert save.lift_ci_low is not None and save.relative_lift is not None
    assert forest["error_x"]["arrayminus"][0] == pytest.approx(save.relative_lift - save.lift_ci_low)


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
    assert "secondary" in row_of(text, "conversion_upload", "Values per arm")
    assert f"{upload.p_value:.3f}" in row and f"{upload.p_value_adjusted:.3f}" in row
    assert re.search(r"\sno\s*$", row)
    assert "adjusted for all secondary comparisons together" in flat(text)


def test_sequential_results_show_the_sequence_as_the_deciding_numbers() -> None:
    metric = conversion("conversion_save", (100, 1000), (136, 1000), role="primary", sequential=True)
    c = metric.comparisons[0]
    assert c.sequential is not None and c.fixed_horizon is not None
    assert c.fixed_horizon.p_value is not None and c.fixed_horizon.p_value < 0.05 and not c.significant
    text = terminal(results([metric], sequential=True))
    row = row_of(text, "conversion_save")
    assert f"{c.sequential.p_value:.3f}" in row and f"{c.fixed_horizon.p_value:.3f}" not in row
    assert "lift CI, p and significant: confidence sequence" in flat(text)
    page = render_html(results([metric], sequential=True))
    assert "confidence sequence (valid at every look)" in page and f"{c.sequential.p_value:.3f}" in page


def test_a_lift_interval_cut_at_minus_100_percent_says_so() -> None:
    metric = conversion("conversion_save", (10, 20), (1, 20), role="primary")
    assert metric.comparisons[0].lift_ci_clamped
    text = terminal(results([metric], units=40))
    assert "[-100.0%*, " in row_of(text, "conversion_save") and FLOOR_NOTE in text


def test_the_terminal_report_fits_80_columns_with_every_figure() -> None:
    text = terminal(full_results())
    assert_fits_80_columns(text)
    for metric in ("conversion_save", "conversion_upload", "inference_failure_rate"):
        assert metric in table(text, "Values per arm") and metric in table(text, "Relative lift")
    assert re.search(
        r"conversion_save\s+guardrail\s+10\.0%\s+13\.6%", row_of(text, "conversion_save", "Values per arm")
    )
    # CUPED: the variance reduction and how much narrower the interval is; not applied says so.
    assert re.search(r"36\.0%\s+20\.0%\s+36\.0%\s+612", row_of(text, "conversion_save", "CUPED (14-day"))
    assert "not applied" in row_of(text, "conversion_upload", "CUPED (14-day")
    # Bayesian: chance to beat control and expected loss, with the prior stated.
    assert re.search(r"99\.8%\s+0\.01%\s+\[", row_of(text, "conversion_save", "Bayesian"))
    assert "Prior: flat (improper) prior on the relative lift" in flat(text)
    # Guardrails: the harmed one marked and alerted.
    assert re.search(
        r"treatment\s+increase\s+2\.0%\s+80\.0%\s+1\.0e-04\s+HARMED",
        table(text, "Guardrails")["inference_failure_rate"],
    )
    assert re.search(r"\sok\s*$", table(text, "Guardrails")["conversion_save"])
    assert "ALERT guardrail inference_failure_rate harmed in treatment" in flat(text)
    # Health: the mismatched dimension value, contaminated units by reason.
    assert re.search(r"Safari\s+500\s+380\s+5\.1e-05", table(text, "Sample ratio mismatch by dimension")["browser"])
    assert "2 values checked, 1 mismatched" in flat(text) and "device 3, user 2" in flat(text)
    # Progress towards the planned sample.
    assert "25% (2,000 of 8,000 units)" in flat(text) and "~21.0 days to go" in flat(text)
    assert "MDE 5.0% of task_duration_s at power 0.8" in flat(text)


def test_the_terminal_styles_a_harmed_guardrail_and_keeps_80_columns_in_colour() -> None:
    styled = terminal(full_results(), styles=True)
    assert "\x1b[1;31m" in table(styled, "Guardrails")["inference_failure_rate"]
    assert "\x1b[1;31m" not in table(styled, "Guardrails")["conversion_save"]
    assert_fits_80_columns(ANSI.sub("", styled))


def test_html_report_shows_lift_over_time_health_bayesian_cuped_guardrails_and_progress() -> None:
    page = render_html(full_results())
    # Lift over time: cumulative with its band, and by day of exposure, for the metric with a timeline.
    figures = {figure["layout"]["title"]["text"]: figure for figure in embedded_figures(page).values()}
    assert "lift by day of exposure of conversion_save (treatment vs control)" in figures
    low, high, line = figures["cumulative lift of conversion_save (treatment vs control)"]["data"]
    assert high["fill"] == "tonexty" and len(line["y"]) == 4
    day = line["x"].index("2026-11-04")
    assert (line["y"][day], low["y"][day], high["y"][day]) == pytest.approx((0.36, 0.16, 0.56))
    # Exposures per day and the sample ratio per dimension value are drawn beside their tables.
    exposures = figures["Units first exposed per day"]["data"]
    assert exposures[0]["x"][-1] == "2026-11-07" and [trace["y"][-1] for trace in exposures] == [140, 130]
    assert "Sample ratio per dimension value" in figures
    # Health tables.
    assert re.search(r'<tr class="harmed"><td>browser</td><td>Safari</td><td>500 \(56\.8%\)</td>', page)
    assert "<td>2026-11-07</td><td>140</td><td>130</td>" in page
    assert "By reason: device: 3, user: 2." in page
    # Every value escaped: a device id and a user id with markup in them.
    assert "<td>device-&lt;b&gt;&amp;1</td><td>user</td><td>control, treatment</td><td>u&lt;1&gt;</td>" in page
    assert "<b>" not in without_charts(page) and "u<1>" not in without_charts(page)
    # Bayesian, CUPED, guardrails, progress.
    assert "<th>chance to beat control</th>" in page and "<td>99.8%</td>" in page
    assert "Prior: flat (improper) prior on the relative lift." in page
    assert "<td>36.0%</td><td>20.0%</td>" in page and "no (no pre-period data)" in page
    assert re.search(r'<tr class="harmed"><td>inference_failure_rate</td><td>treatment</td>.*?<td>HARMED</td>', page)
    assert 'role="progressbar"' in page and 'aria-valuenow="25"' in page and "2,000 of 8,000 units" in page
    # Self-contained: nothing fetched, nothing run but the inline library drawing the figures.
    rest = without_charts(page)
    assert "<script" not in rest and "http://" not in rest and "https://" not in rest


def test_html_report_escapes_an_experiment_key_and_metric_values() -> None:
    hostile = full_results().model_copy(
        update={"experiment_key": "<script>x</script>", "alerts": ['"><img src=x onerror=alert(1)>']}
    )
    page = render_html(hostile)
    assert "<script" not in without_charts(page) and "<img" not in without_charts(page)
    assert "&lt;script&gt;x&lt;/script&gt;" in page
