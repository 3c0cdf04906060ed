"""``funnelstream qa …`` and ``funnelstream status``. Heavy imports stay inside the commands."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from clickhouse.qa.errors import WarehouseNotShared

if TYPE_CHECKING:
    from clickhouse.backend import Warehouse

app = typer.Typer(help="Data quality checks over the warehouse, and the pipeline heartbeat.", no_args_is_help=True)
status_app = typer.Typer(help="Every pipeline stage's lag and health at a glance.", invoke_without_command=True)


def _console() -> Console:
    # Built per command so the terminal width is read when the command runs.
    return Console()


def _timestamp(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time such as 2026-11-26T10:00Z", param_hint=name
        ) from None
    # A time without a zone is read as UTC, the warehouse's zone.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("run")
def run(
    from_: str | None = typer.Option(None, "--from", help="Window start, ISO 8601 (default: 24 h before --to)."),
    to: str | None = typer.Option(None, "--to", help="Window end, ISO 8601 (default: now)."),
    check: list[str] = typer.Option([], "--check", help="Run only this check; repeatable."),
    fail_on: str = typer.Option("error", help="Lowest severity whose failure fails the run: error or warning."),
    write: bool = typer.Option(True, help="Record the results in the qa_results table."),
) -> None:
    """Run the QA checks; exit code 1 when a check fails at --fail-on severity or cannot run."""
    from clickhouse.backend import open_warehouse
    from clickhouse.qa.checks import Severity, select_checks
    from clickhouse.qa.errors import QAError
    from clickhouse.qa.remote import WarehouseApi
    from clickhouse.qa.runner import render, run_checks, write_results
    from clickhouse.qa.settings import QASettings
    from clickhouse.settings import WarehouseSettings
    from funnelstream.errors import TransientError
    from funnelstream.logs import configure_logging

    console = _console()
    settings = QASettings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        severity = Severity(fail_on)
    except ValueError:
        raise typer.BadParameter("expected error or warning", param_hint="--fail-on") from None
    window_to = _timestamp(to, "--to") or datetime.now(UTC)
    window_from = _timestamp(from_, "--from") or window_to - timedelta(hours=24)
    try:
        checks = select_checks(check, settings.qa.thresholds)
        reader = WarehouseSettings()
        read_key = reader.warehouse.read_key.get_secret_value()
        api = WarehouseApi(reader.api_url, read_key=read_key) if settings.clickhouse.embedded else None
        through_api = api is not None and api.ready()
        if api is not None and not through_api:
            api.close()
        # While `warehouse serve` runs it owns the embedded data; QA then reads through its API.
        warehouse: Warehouse | WarehouseApi = api if through_api and api else open_warehouse(settings.clickhouse)
        try:
            result = run_checks(warehouse, checks, window_from, window_to)
            if write and isinstance(warehouse, WarehouseApi):
                console.print("[yellow]results not recorded: the warehouse API is read-only[/yellow]")
            elif write and not isinstance(warehouse, WarehouseApi):
                write_results(warehouse, result)
        finally:
            warehouse.close()
    except (QAError, TransientError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    render(result, console)
    failures = result.gate_failures(severity)
    if failures:
        console.print(f"[red]{len(failures)} check(s) failed: {', '.join(r.check.name for r in failures)}[/red]")
        raise typer.Exit(1)


@app.command("list")
def list_checks() -> None:
    """The checks, their thresholds and severities."""
    from rich.table import Table

    from clickhouse.qa.checks import CHECKS

    console = _console()
    table = Table()
    for column in ("check", "severity", "threshold", "measures"):
        table.add_column(column)
    for item in CHECKS:
        table.add_row(item.name, str(item.severity), f"{item.threshold:g}", item.description)
    console.print(table)


@app.command("heartbeat")
def heartbeat(
    count: int | None = typer.Option(None, help="Stop after this many heartbeats (default: run until SIGTERM)."),
) -> None:
    """Produce a pipeline heartbeat to events.raw every FS_QA__HEARTBEAT_INTERVAL_S seconds."""
    import signal

    from prometheus_client import start_http_server

    from clickhouse.backend import open_warehouse
    from clickhouse.qa.settings import QASettings
    from clickhouse.settings import WarehouseSettings
    from funnelstream.kafka import wait_for_broker
    from funnelstream.logs import configure_logging
    from ops.heartbeat import HeartbeatEmitter
    from ops.status import Freshness, read_freshness

    settings = QASettings()
    configure_logging(settings.log_level, settings.log_json)
    if settings.qa.heartbeat_metrics_port:
        start_http_server(settings.qa.heartbeat_metrics_port)
    embedded = settings.clickhouse.embedded
    reader = WarehouseSettings()
    api_url = reader.api_url if embedded else None

    def lease() -> closing[Warehouse]:
        if embedded:
            # The embedded data belongs to `warehouse serve`; opening it here would lock it out.
            raise WarehouseNotShared(str(settings.clickhouse.chdb_path))
        return closing(open_warehouse(settings.clickhouse))

    def freshness() -> Freshness:
        return read_freshness(settings, lease, datetime.now(UTC), api_url, reader.warehouse.read_key.get_secret_value())

    wait_for_broker(settings.kafka)
    emitter = HeartbeatEmitter(settings, freshness=freshness, watch_lag=True)
    # SIGTERM drains: the beat in flight is acknowledged, the producer flushed, then exit.
    previous = {sig: signal.signal(sig, lambda *_: emitter.stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sent = emitter.run(count)
    finally:
        emitter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _console().print(f"{sent} heartbeat(s) sent")


@status_app.callback()
def status(
    services: bool = typer.Option(True, help="Probe each service's readiness endpoint."),
) -> None:
    """Consumer-group lag, heartbeat freshness and readiness of every stage; exit 1 when one is down."""
    from clickhouse.backend import open_warehouse
    from clickhouse.qa.settings import QASettings
    from clickhouse.settings import WarehouseSettings
    from ops.status import Health, collect_status, overall, render_status

    settings = QASettings()
    # An embedded warehouse belongs to `warehouse serve` while it runs; read through its API then.
    reader = WarehouseSettings()
    api_url = reader.api_url if settings.clickhouse.embedded else None
    stages = collect_status(
        settings,
        lambda: closing(open_warehouse(settings.clickhouse)),
        probe_services=services,
        api_url=api_url,
        read_key=reader.warehouse.read_key.get_secret_value(),
    )
    render_status(stages, _console())
    if overall(stages) is Health.DOWN:
        raise typer.Exit(1)
