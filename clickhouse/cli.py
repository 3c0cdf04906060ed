"""``funnelstream db``, ``warehouse``, ``report``, ``dataset`` and ``forget`` commands."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

db_app = typer.Typer(help="The warehouse schema.", no_args_is_help=True)
warehouse_app = typer.Typer(help="The warehouse process: loader and query API.", no_args_is_help=True)
report_app = typer.Typer(help="Funnel reports from the warehouse.", no_args_is_help=True)
dataset_app = typer.Typer(help="Retraining datasets of input / mask / result pairs.", no_args_is_help=True)
forget_app = typer.Typer(help="Delete one person's images and events.")
console = Console()
err_console = Console(stderr=True)
DEFAULT_STEPS = "image_uploaded,tool_selected,inference_requested,image_saved,score_submitted"


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the migrations not yet recorded in schema_migrations. Safe to run again."""
    from clickhouse.backend import open_warehouse
    from clickhouse.migrate import migrate
    from clickhouse.settings import WarehouseSettings

    settings = WarehouseSettings()
    warehouse = open_warehouse(settings.clickhouse)
    try:
        report = migrate(warehouse, cluster=settings.clickhouse.cluster)
    finally:
        warehouse.close()
    console.print(f"applied: {', '.join(report.applied) or 'none'}")
    console.print(f"already applied: {len(report.already_applied)}")


@warehouse_app.command("serve")
def warehouse_serve(
    host: str | None = typer.Option(None, help="Listen address (default FS_WAREHOUSE__HOST)."),
    port: int | None = typer.Option(None, help="Listen port (default FS_WAREHOUSE__PORT)."),
    loader: bool | None = typer.Option(None, "--loader/--no-loader", help="Run the loader in this process."),
) -> None:
    """Own the warehouse: apply migrations, run the loader and serve the query API."""
    import uvicorn

    from clickhouse.api import create_app
    from clickhouse.settings import WarehouseSettings
    from funnelstream.logs import configure_logging
    from funnelstream.serving import uvicorn_options

    settings = WarehouseSettings()
    configure_logging(settings.log_level, settings.log_json)
    app = create_app(settings, run_loader=loader)
    listen_host, listen_port = host or settings.warehouse.host, port or settings.warehouse.port
    # A wildcard address is not one a browser can open; this machine's loopback is.
    shown = "127.0.0.1" if listen_host in ("0.0.0.0", "::", "") else listen_host  # noqa: S104
    shown = f"[{shown}]" if ":" in shown else shown
    typer.echo(f"workspace: http://{shown}:{listen_port}/ui (log in with the read key)")
    uvicorn.run(
        app,
        host=listen_host,
        port=listen_port,
        log_config=None,
        **uvicorn_options(settings.connection_limits),
    )


@warehouse_app.command("load")
def warehouse_load() -> None:
    """Run only the loader (a ClickHouse server, or chdb when no warehouse process runs)."""
    from clickhouse.backend import open_warehouse
    from clickhouse.loader import Loader
    from clickhouse.migrate import migrate
    from clickhouse.settings import WarehouseSettings
    from funnelstream.logs import configure_logging

    settings = WarehouseSettings()
    configure_logging(settings.log_level, settings.log_json)
    warehouse = open_warehouse(settings.clickhouse)
    migrate(warehouse, cluster=settings.clickhouse.cluster)
    loader = Loader(settings, warehouse)
    loader.install_signal_handlers()
    try:
        loader.setup()
        loader.run()
    finally:
        loader.close()
        warehouse.close()


TASK_TIME_COLUMNS = ("breakdown", "images", "saved_images", "mean_s", "p50_s", "p90_s", "p99_s")


def task_time_table(rows: list[dict[str, Any]], breakdown: str) -> Table:
    """The task_time_summary rows as they are: images, saved images, mean and quantiles in seconds."""
    table = Table(title=f"Task time per image (first tool click to the save of an inferred result), by {breakdown}")
    for column in TASK_TIME_COLUMNS:
        table.add_column(column, justify="left" if column == "breakdown" else "right")
    for row in rows:
        table.add_row(*("" if row[column] is None else str(row[column]) for column in TASK_TIME_COLUMNS))
    return table


def _utc_date(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@report_app.command("funnel")
def report_funnel(
    start: datetime | None = typer.Option(None, "--from", help="Start (UTC), default 7 days ago."),
    end: datetime | None = typer.Option(None, "--to", help="End (UTC), default now."),
    breakdown: str = typer.Option("none", help="none, tool, inference_type, variant, day or source."),
    experiment: str = typer.Option("", help="Experiment for --breakdown variant; default: the most common one."),
    unit: str = typer.Option("input_id", help="input_id (image), anonymous_id (device) or session_id."),
    window: int = typer.Option(3600, help="Funnel window in seconds."),
    strict: bool = typer.Option(False, help="Strict order: another step in between stops the unit."),
    steps: str = typer.Option(DEFAULT_STEPS, help="Comma-separated event types, 1 to 5."),
    exclude: str = typer.Option("", help="Leave out units with this event type."),
    html: Path | None = typer.Option(None, help="Also write an HTML page with charts here."),
) -> None:
    """Print the funnel with conversion and drop-off per step; optionally an HTML page."""
    from clickhouse.client import connect
    from clickhouse.queries import Breakdown, FunnelMode, FunnelRequest, Unit
    from clickhouse.report import completeness_note, funnel_page

    now = datetime.now(UTC)
    first, last = _utc_date(start, now - timedelta(days=7)), _utc_date(end, now)
    reader = connect()
    if breakdown == "variant" and not experiment:
        top = reader.named("top_experiment", {"from": first, "to": last})
        if not top:
            reader.close()
            raise typer.BadParameter("no events in the range carry an experiment; pass --experiment")
        experiment = str(top[0]["experiment_key"])
        console.print(f"variants of experiment {experiment!r}")
    try:
        request = FunnelRequest(
            start=first,
            end=last,
            steps=tuple(s.strip() for s in steps.split(",") if s.strip()),
            window_s=window,
            unit=Unit(unit),
            mode=FunnelMode.STRICT if strict else FunnelMode.ORDERED,
            breakdown=Breakdown(breakdown),
            experiment=experiment,
            exclude=exclude,
        )
    except ValueError as exc:
        reader.close()
        raise typer.BadParameter(str(exc)) from None
    try:
        rows = reader.named(request.query_name(), request.parameters())
        timing = reader.named("time_to_convert", request.parameters()) if html else []
        trend = reader.named("daily_conversion", {"from": request.start, "to": request.end, "window_s": window})
        # Task time has one definition (the task_durations view); the report prints the summary's rows.
        task_breakdown = breakdown if breakdown in ("variant", "tool", "day") else "none"
        task_times = reader.named(
            "task_time_summary",
            {"from": request.start, "to": request.end, "breakdown": task_breakdown, "experiment": experiment},
        )
    finally:
        reader.close()
    table = Table(title=f"Funnel {request.start:%Y-%m-%d %H:%M} .. {request.end:%Y-%m-%d %H:%M} UTC, by {breakdown}")
    for column in ("breakdown", "step", "event", "units", "conversion", "step conversion", "dropped"):
        table.add_column(column, justify="right" if column not in ("breakdown", "event") else "left")
    for row in rows:
        table.add_row(
            str(row["breakdown"]), str(row["step"]), str(row["step_name"]), str(row["units"]),
            f"{float(row['conversion']):.1%}", f"{float(row['step_conversion']):.1%}", str(row["dropped"]),
        )  # fmt: skip
    console.print(table)
    console.print(task_time_table(task_times, task_breakdown))
    note = completeness_note(request)
    if note:
        console.print(f"[yellow]{note}[/yellow]")
    incomplete_days = [str(row["day"]) for row in trend if not row["complete"]]
    if incomplete_days:
        console.print(
            f"[yellow]trend days not final yet (day end + window not past): {', '.join(incomplete_days)}[/yellow]"
        )
    if html is not None:
        html.write_text(funnel_page(request, rows, timing, trend, task_times))
        console.print(f"wrote {html}")


def _day(value: str, option: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}", param_hint=option) from None


@dataset_app.command("export")
def export(
    from_day: str = typer.Option(..., "--from", help="First day, YYYY-MM-DD (UTC), inclusive."),
    to_day: str = typer.Option(..., "--to", help="Last day, YYYY-MM-DD (UTC), inclusive."),
    min_score: int | None = typer.Option(None, "--min-score", min=1, max=5, help="Keep pairs rated at least N."),
    inference_type: str | None = typer.Option(None, "--inference-type", help="e.g. inpainting, deblurring."),
    model_version: str | None = typer.Option(None, "--model-version", help="Only results of this model version."),
    name: str = typer.Option("pairs", "--name", help="Dataset name: datasets/<name>/<from>_<to>.parquet."),
    out: Path | None = typer.Option(None, "--out", help="Local folder for the manifest; default DATA_DIR/datasets."),
    download: Path | None = typer.Option(None, "--download", help="Also download the images here."),
) -> None:
    """Select the input / mask / result pairs of a date range into a Parquet manifest."""
    from clickhouse.retraining import DatasetFilter, export_dataset
    from clickhouse.settings import WarehouseSettings

    start, end = _day(from_day, "--from"), _day(to_day, "--to")
    if end < start:
        raise typer.BadParameter(f"{to_day} is before --from {from_day}", param_hint="--to")
    selection = DatasetFilter(start, end, min_score, inference_type, model_version)
    settings = WarehouseSettings()
    out = out or settings.paths.data_dir / "datasets"
    summary = export_dataset(settings, selection, name=name, out_dir=out, download_dir=download)
    err_console.print(f"{summary.rows} pairs → {summary.local_path} and s3://{summary.bucket}/{summary.object_key}")
    if download is not None:
        err_console.print(f"{summary.downloaded} images in {download}")


@forget_app.callback(invoke_without_command=True)
def forget(
    anonymous_id: str | None = typer.Option(None, "--anonymous-id", help="The device id to forget."),
    user_id: str | None = typer.Option(None, "--user-id", help="The user id to forget (every device it used)."),
) -> None:
    """Delete a person's images (inputs, masks, results, proposals) and events, and report the counts."""
    from clickhouse.forget import forget_person
    from clickhouse.settings import WarehouseSettings

    if (anonymous_id is None) == (user_id is None):
        raise typer.BadParameter("give exactly one of --anonymous-id and --user-id", param_hint="--anonymous-id")
    report = forget_person(WarehouseSettings(), anonymous_id=anonymous_id, user_id=user_id)
    for line in report.lines():
        typer.echo(line)
