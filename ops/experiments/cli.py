"""``funnelstream experiment ...``: reports on the terminal or as HTML."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="A/B experiments: definitions and reports.", no_args_is_help=True)
console = Console()


@app.command("report")
def report(
    key: str = typer.Argument(..., help="Experiment key, as in the definitions file."),
    html: Path | None = typer.Option(None, "--html", help="Also write an HTML report with charts here."),
    definitions: Path | None = typer.Option(None, help="Definitions file; default FS_EXPERIMENTS__DEFINITIONS_PATH."),
    events: Path | None = typer.Option(
        None,
        help="Analyse a Parquet export of events (or of a simulation) in a scratch embedded warehouse, "
        "through the same queries, instead of the configured warehouse.",
    ),
    sequential: bool = typer.Option(False, help="Confidence sequences, valid however often you look."),
) -> None:
    """Exposures, sample-ratio check, contamination, funnel conversion, task time and score per variant."""
    import pyarrow.parquet as pq

    from clickhouse.experiments.analysis import AnalysisConfig, analyze
    from clickhouse.experiments.warehouse import analyze_export, fetch_results_via_api, load_frames
    from funnelstream.experiments.definitions import load_definitions
    from funnelstream.experiments.errors import ExperimentError
    from funnelstream.experiments.settings import ExperimentSettings
    from ops.experiments.report import render_html, render_terminal
    from ops.journeys import warehouse_rows

    settings = ExperimentSettings()
    config = AnalysisConfig(
        alpha=settings.experiments.alpha,
        winsor_quantile=settings.experiments.winsor_quantile,
        bootstrap_resamples=settings.experiments.bootstrap_resamples,
        sequential=sequential,
    )
    try:
        experiment = load_definitions(definitions or settings.experiments.definitions_path).get(key)
        if events is not None:
            table = pq.read_table(events)
            if "event_id" not in table.column_names:  # a simulation's frame, not an export
                table = warehouse_rows(table.to_pandas(), experiment.key)
            results = analyze_export(table, experiment, config)
        elif settings.experiments.warehouse_api_url:
            from clickhouse.settings import WarehouseSettings

            read_key = WarehouseSettings().warehouse.read_key.get_secret_value()
            results = fetch_results_via_api(settings.experiments.warehouse_api_url, read_key, key, sequential)
        else:
            results = analyze(load_frames(experiment, settings.clickhouse), experiment, config)
    except ExperimentError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    render_terminal(results, console)
    if html is not None:
        html.write_text(render_html(results))
        console.print(f"HTML report: {html}")


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
        raise typer.Exit(2) from None
    console.print(f"version {definitions.version}: {len(definitions.experiments)} experiment(s) valid")
