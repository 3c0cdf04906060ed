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
    from funnelstream.demo import DemoOptions, run_demo

    run_demo(console, DemoOptions(users=users, jobs=jobs, serve=serve))


def _mount_service_commands() -> None:
    """Each package owns its command group; its cli module keeps heavy imports inside commands."""
    import importlib

    for module_name, attribute, name in SERVICE_COMMANDS:
        sub_app = getattr(importlib.import_module(module_name), attribute)
        app.add_typer(sub_app, name=name)


# (module, attribute, command name). One line per command group.
SERVICE_COMMANDS: list[tuple[str, str, str]] = [
    ("ingest.cli", "app", "ingest"),
    ("funnelstream.qa.cli", "app", "qa"),
    ("funnelstream.qa.cli", "status_app", "status"),
    ("inference_service.cli", "app", "inference"),
    ("inference_service.cli", "dataset_app", "dataset"),
    ("inference_service.cli", "forget_app", "forget"),
    ("funnelstream.experiments.cli", "app", "experiment"),
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
