"""``funnelstream experiment ...``: reports on the terminal or as HTML, a status check for a
scheduler, and sample-size plans.

Every command reads the experiment the same way: through the warehouse API when
``FS_EXPERIMENTS__WAREHOUSE_API_URL`` is set, else from the configured warehouse (or an export).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from clickhouse.experiments.analysis import ExperimentResults
    from clickhouse.experiments.results import PlanResult

app = typer.Typer(help="A/B experiments: definitions, reports, status and plans.", no_args_is_help=True)
console = Console()

EXIT_HEALTHY, EXIT_ALERT, EXIT_ERROR = 0, 1, 2

DEFINITIONS_OPTION = typer.Option(None, help="Definitions file; default FS_EXPERIMENTS__DEFINITIONS_PATH.")
EVENTS_HELP = (
    "Analyse a Parquet export of events (or of a simulation) in a scratch embedded warehouse, "
    "through the same queries, instead of the configured warehouse."
)


def _read_key() -> str:
    from clickhouse.settings import WarehouseSettings

    return WarehouseSettings().warehouse.read_key.get_secret_value()


def _results(key: str, definitions: Path | None, events: Path | None, sequential: bool) -> ExperimentResults:
    """The experiment's results from an export, the warehouse API or the configured warehouse."""
    import pyarrow.parquet as pq

    from clickhouse.experiments.analysis import analyze
    from clickhouse.experiments.service import analysis_config
    from clickhouse.experiments.warehouse import analyze_export, fetch_results_via_api, load_frames
    from funnelstream.experiments.definitions import load_definitions
    from funnelstream.experiments.settings import ExperimentSettings
    from ops.journeys import warehouse_rows

    settings = ExperimentSettings()
    config = analysis_config(settings.experiments, sequential)
    experiment = load_definitions(definitions or settings.experiments.definitions_path).get(key)
    if events is not None:
        table = pq.read_table(events)
        if "event_id" not in table.column_names:  # a simulation's frame, not an export
            table = warehouse_rows(table.to_pandas(), experiment.key)
        return analyze_export(table, experiment, config)
    if settings.experiments.warehouse_api_url:
        return fetch_results_via_api(settings.experiments.warehouse_api_url, _read_key(), key, sequential)
    return analyze(load_frames(experiment, settings.clickhouse), experiment, config)


@app.command("report")
def report(
    key: str = typer.Argument(..., help="Experiment key, as in the definitions file."),
    html: Path | None = typer.Option(None, "--html", help="Also write an HTML report with charts here."),
    definitions: Path | None = DEFINITIONS_OPTION,
    events: Path | None = typer.Option(None, help=EVENTS_HELP),
    sequential: bool = typer.Option(False, help="Confidence sequences, valid however often you look."),
) -> None:
    """Exposures, sample-ratio check, contamination, funnel conversion, task time and score per variant."""
    from funnelstream.experiments.errors import ExperimentError
    from ops.experiments.report import render_html, render_terminal

    try:
        results = _results(key, definitions, events, sequential)
    except ExperimentError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_ERROR) from None
    render_terminal(results, console)
    if html is not None:
        html.write_text(render_html(results))
        console.print(f"HTML report: {html}")


@app.command("status")
def status(
    key: str = typer.Argument(..., help="Experiment key, as in the definitions file."),
    definitions: Path | None = DEFINITIONS_OPTION,
    events: Path | None = typer.Option(None, help=EVENTS_HELP),
    sequential: bool = typer.Option(False, help="Confidence sequences, valid however often you look."),
) -> None:
    """One line per alert (sample ratio, contamination, harmed guardrails, SRM per dimension).
    Exit 0 healthy, 1 at least one alert, 2 the status could not be read."""
    from clickhouse.experiments.monitor import alert_lines

    try:
        results = _results(key, definitions, events, sequential)
    except Exception as exc:
        # Whatever went wrong, a scheduler must read "could not tell" (2), never "alert" (1), which
        # is what an uncaught exception's exit code would say.
        typer.echo(f"{key}: ERROR {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    alerts = alert_lines(results)
    # Plain lines, never wrapped: a scheduler reads them one alert per line.
    for alert in alerts:
        typer.echo(f"{key}: ALERT {alert}")
    if not alerts:
        units = sum(exposure.units for exposure in results.exposures)
        typer.echo(f"{key}: healthy ({units} units, no alerts)")
    raise typer.Exit(EXIT_ALERT if alerts else EXIT_HEALTHY)


def parse_share(text: str, option: str) -> float:
    """``5%`` or ``0.05``; a bare number of 1 or more is refused (5 % or 500 %?)."""
    cleaned = text.strip()
    try:
        value = float(cleaned[:-1]) / 100 if cleaned.endswith("%") else float(cleaned)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a share: write 5% or 0.05", param_hint=option) from None
    if not cleaned.endswith("%") and value >= 1:
        raise typer.BadParameter(f"{text!r} is ambiguous: write {value:g}% or {value / 100:g}", param_hint=option)
    return value


def _check(value: float, low: float, high: float, option: str, high_inclusive: bool = False) -> float:
    # NaN fails every comparison, so it is refused here too.
    if not (low <= value and (value <= high if high_inclusive else value < high)):
        bound = f"{high:g}]" if high_inclusive else f"{high:g})"
        raise typer.BadParameter(f"{value:g} is outside [{low:g}, {bound}", param_hint=option)
    return value


def _plan_table(plan: PlanResult) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"Plan: MDE {plan.mde:.1%}, power {plan.power:g}, alpha {plan.alpha:g}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )
    for header in ("metric", "baseline", "sd/unit", "units needed", "days", f"MDE in {plan.days:g} d"):
        table.add_column(header, no_wrap=True)
    for m in plan.metrics:
        table.add_row(
            m.metric,
            "–" if m.baseline is None else f"{m.baseline:,.4g}",
            "–" if m.per_unit_standard_deviation is None else f"{m.per_unit_standard_deviation:,.4g}",
            "–" if m.required_units is None else f"{m.required_units:,}",
            "–" if m.required_days is None else f"{m.required_days:,.1f}",
            "–" if m.reachable_mde is None else f"{m.reachable_mde:.1%}",
        )
    return table


@app.command("plan")
def plan(
    key: str = typer.Argument(..., help="Experiment key, as in the definitions file."),
    mde: str = typer.Option(..., "--mde", help="Relative change to detect: 5% or 0.05."),
    power: str = typer.Option("0.8", "--power", help="Probability of detecting it: 0.8 or 80%."),
    days: float = typer.Option(14.0, "--days", help="Planned duration: the MDE reachable in it is shown too."),
    as_json: bool = typer.Option(False, "--json", help="The plan as JSON (as GET /v1/experiments/{key}/plan)."),
    definitions: Path | None = DEFINITIONS_OPTION,
) -> None:
    """Units and days each metric needs to detect the MDE, from the experiment's variance and traffic
    so far (recent traffic before it has units); exit 2 on a bad option or an unreachable warehouse."""
    from clickhouse.experiments.routes import DAYS_BOUNDS, MDE_BOUNDS
    from clickhouse.experiments.service import plan_warehouse
    from clickhouse.experiments.warehouse import fetch_plan_via_api, with_configured_warehouse
    from funnelstream.experiments.definitions import load_definitions
    from funnelstream.experiments.errors import ExperimentError
    from funnelstream.experiments.settings import ExperimentSettings

    try:
        share = _check(parse_share(mde, "--mde"), *MDE_BOUNDS, "--mde")
        chance = parse_share(power, "--power")
        if not 0.5 < chance < 1:
            raise typer.BadParameter(f"{chance:g} is outside (0.5, 1)", param_hint="--power")
        duration = _check(days, *DAYS_BOUNDS, "--days", high_inclusive=True)
    except typer.BadParameter as exc:
        console.print(f"[red]Invalid value for {exc.param_hint}: {exc.message}[/red]", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    settings = ExperimentSettings()
    try:
        experiment = load_definitions(definitions or settings.experiments.definitions_path).get(key)
        if settings.experiments.warehouse_api_url:
            result = fetch_plan_via_api(
                settings.experiments.warehouse_api_url, _read_key(), key, mde=share, power=chance, days=duration
            )
        else:
            alpha = settings.experiments.alpha
            result = with_configured_warehouse(
                settings.clickhouse,
                lambda warehouse: plan_warehouse(
                    warehouse, experiment, mde=share, power=chance, days=duration, alpha=alpha
                ),
            )
    except ExperimentError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    source = "the experiment's units so far" if result.source == "experiment" else "recent traffic"
    rate = "unknown" if result.units_per_day is None else f"{result.units_per_day:,.0f}"
    console.print(f"{key}: planned from {source}", highlight=False)
    console.print(f"new units per day: {rate}", highlight=False)
    console.print(_plan_table(result))
    console.print("units needed: all arms together; days: at the traffic so far", highlight=False)


@app.command("validate")
def validate(path: Path = typer.Argument(..., help="Definitions file to check.")) -> None:
    """Check a definitions file; exit 2 naming every bad field."""
    from funnelstream.experiments.definitions import load_definitions
    from funnelstream.experiments.errors import DefinitionError

    try:
        definitions = load_definitions(path)
    except DefinitionError as exc:
        for error in exc.errors:
            console.print(f"[red]{error}[/red]")
        raise typer.Exit(EXIT_ERROR) from None
    console.print(f"version {definitions.version}: {len(definitions.experiments)} experiment(s) valid")
