"""The ``funnelstream`` command. Each package contributes its own group of subcommands."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="Funnelstream: clickstream and funnel analytics.", no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local stack: Kafka and the S3 server on loopback.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console()


@stack_app.command("up")
def stack_up() -> None:
    """Start what is not running yet; a second call restarts nothing."""
    from infra.stack import main as infra_main

    raise typer.Exit(infra_main(["up"]))


@stack_app.command("down")
def stack_down() -> None:
    """Stop what ``up`` started."""
    from infra.stack import main as infra_main

    raise typer.Exit(infra_main(["down"]))


@stack_app.command("status")
def stack_status() -> None:
    from infra.stack import main as infra_main

    raise typer.Exit(infra_main(["status"]))


@app.command()
def schema(out: Path = typer.Option(Path("schemas"), help="Folder for one JSON Schema per event type.")) -> None:
    """Write JSON Schema for every event type."""
    from funnelstream.schema import write_schemas

    for path in write_schemas(out):
        console.print(str(path))


@app.command()
def setup() -> None:
    """Create what the services expect: topics, bucket and the warehouse schema. Idempotent."""
    from funnelstream.kafka import ensure_topics, wait_for_broker
    from funnelstream.objectstore import ensure_bucket, make_client
    from funnelstream.settings import ServiceSettings

    settings = ServiceSettings()
    wait_for_broker(settings.kafka)
    created = ensure_topics(settings.kafka)
    console.print(f"topics created: {', '.join(created) or 'none (all present)'}")
    bucket_created = ensure_bucket(make_client(settings.s3), settings.s3.bucket)
    console.print(f"bucket {settings.s3.bucket}: {'created' if bucket_created else 'present'}")
    from clickhouse.backend import open_warehouse
    from clickhouse.migrate import migrate

    warehouse = open_warehouse(settings.clickhouse)
    try:
        migrations = migrate(warehouse, cluster=settings.clickhouse.cluster)
    finally:
        warehouse.close()
    console.print(f"migrations applied: {', '.join(migrations.applied) or 'none (all present)'}")


@app.command()
def demo(
    users: int = typer.Option(2000, help="Simulated users (a few percent log in on a second device)."),
    jobs: int = typer.Option(6, help="Real inference jobs on generated images."),
    serve: bool = typer.Option(False, "--serve", help="Keep every service running afterwards."),
) -> None:
    """Run the main job end to end on the embedded default."""
    from ops.demo import DemoOptions, run_demo

    run_demo(console, DemoOptions(users=users, jobs=jobs, serve=serve))


@app.command()
def load(
    rate: float = typer.Option(1000.0, help="Events per second offered (open loop)."),
    duration: float = typer.Option(30.0, help="Seconds of sending."),
    batch_size: int = typer.Option(100, help="Events per POST /v1/batch."),
    malformed: float = typer.Option(0.0, help="Share of events broken on purpose; each must reach the DLQ."),
    ingest_url: str = typer.Option("http://127.0.0.1:8000", help="The collector to drive."),
    warehouse_url: str = typer.Option("http://127.0.0.1:8100", help="The warehouse API to check against."),
    local: bool = typer.Option(False, "--local", help="Start the four services on the local stack for this run."),
    timeout: float = typer.Option(300.0, help="Seconds to wait for the warehouse to show every accepted event."),
) -> None:
    """Drive the collector with realistic events; report accepted/s, freshness and completeness (last line JSON)."""
    import orjson

    from clickhouse.settings import WarehouseSettings
    from ops.load import LoadOptions, run_load

    options = LoadOptions(
        rate=rate, duration_s=duration, batch_size=batch_size, malformed_share=malformed, ingest_url=ingest_url
    )
    if local:
        from ops.pipeline import local_pipeline

        with local_pipeline() as pipeline:
            options = LoadOptions(**{**options.__dict__, "ingest_url": pipeline.ingest_url})
            figures = run_load(options, pipeline.warehouse_url, pipeline.warehouse_read_key, timeout)
    else:
        read_key = WarehouseSettings().warehouse.read_key.get_secret_value()
        figures = run_load(options, warehouse_url, read_key, timeout)
    print(orjson.dumps(figures).decode())
    raise typer.Exit(0 if figures["ok"] else 1)


@app.command()
def chaos(
    short: bool = typer.Option(False, "--short", help="The form the test suite runs: lower rate, fewer jobs."),
    scenario: list[str] = typer.Option(
        [],
        help="Run only these scenarios (repeatable); default: all. stream_worker_kill, loader_kill, kafka_outage, "
        "s3_outage_jobs and collector_kill run on one broker; broker_kill, broker_rolling_restart and "
        "min_isr_lost start a three-node cluster of their own.",
    ),
    rate: float | None = typer.Option(None, help="Events per second during each fault."),
    keep_logs: bool = typer.Option(False, "--keep-logs", help="Keep the logs (.stack/chaos-logs/) on success too."),
) -> None:
    """Faults under load, then exact counts by event_id (one JSON line per scenario, a summary last)."""
    from dataclasses import replace

    import orjson

    from ops.chaos import BROKER_SCENARIOS, SHORT, SHORT_BROKER_KILL, ChaosOptions, ScenarioReport, run_chaos

    options = SHORT if short else ChaosOptions()
    if short and scenario and set(scenario) <= set(BROKER_SCENARIOS):
        options = SHORT_BROKER_KILL
    if scenario:
        options = replace(options, scenarios=tuple(scenario))
    if rate is not None:
        options = replace(options, rate=rate)
    if keep_logs:
        options = replace(options, keep_logs=True)

    import logging

    from funnelstream.logs import JsonFormatter

    # This process's own Kafka clients (the cluster watch, the results reader) log a refused
    # connection each time a node is down on purpose: to a file, so the console keeps the JSON lines.
    options.keep_logs_dir.mkdir(parents=True, exist_ok=True)
    clients_log = logging.FileHandler(options.keep_logs_dir / "chaos-clients.log")
    clients_log.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [clients_log]
    logging.getLogger().setLevel(logging.WARNING)

    def show(report: ScenarioReport) -> None:
        line = {"scenario": report.scenario, "ok": report.ok, "problems": report.problems, **report.figures}
        print(orjson.dumps(line).decode(), flush=True)

    import signal

    def interrupted(signum: int, _frame: object) -> None:
        # SIGTERM stops the private stack and services like Ctrl-C does, instead of orphaning them.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    reports = run_chaos(options, show)
    summary = {
        "scenarios": len(reports),
        "passed": sum(report.ok for report in reports),
        "lost": sum(int(report.figures.get("lost", 0)) for report in reports),
        "duplicated": sum(int(report.figures.get("duplicated", 0)) for report in reports),
        "ok": all(report.ok for report in reports),
    }
    print(orjson.dumps(summary).decode())
    raise typer.Exit(0 if summary["ok"] else 1)


def _mount_service_commands() -> None:
    """Each package owns its command group; its cli module keeps heavy imports inside commands."""
    import importlib

    for module_name, attribute, name in SERVICE_COMMANDS:
        sub_app = getattr(importlib.import_module(module_name), attribute)
        app.add_typer(sub_app, name=name)


# (module, attribute, command name). One line per command group.
SERVICE_COMMANDS: list[tuple[str, str, str]] = [
    ("ingest.cli", "app", "ingest"),
    ("ops.qa", "app", "qa"),
    ("ops.qa", "status_app", "status"),
    ("inference_service.cli", "app", "inference"),
    ("clickhouse.cli", "dataset_app", "dataset"),
    ("clickhouse.cli", "forget_app", "forget"),
    ("ops.experiments.cli", "app", "experiment"),
    ("clickhouse.cli", "db_app", "db"),
    ("clickhouse.cli", "warehouse_app", "warehouse"),
    ("clickhouse.cli", "report_app", "report"),
    ("stream_processors.cli", "app", "stream"),
    ("stream_processors.cli", "dims_app", "dims"),
]


def main() -> None:
    _mount_service_commands()
    app()


if __name__ == "__main__":
    main()
