"""Command groups ``funnelstream stream`` and ``funnelstream dims``. Heavy imports stay inside."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The Faust stream processors: dedup, enrichment, sessionization.", no_args_is_help=True)
dims_app = typer.Typer(help="Tool and inference dimensions on their compacted topics.", no_args_is_help=True)


@app.command("worker")
def worker(
    web_port: int | None = typer.Option(None, help="Port of /healthz and /dimensions (FS_STREAM__WEB_PORT)."),
    web_host: str | None = typer.Option(None, help="Address to bind the web server to (FS_STREAM__WEB_HOST)."),
) -> None:
    """Run a worker; start more with the same app id to share the partitions."""
    from funnelstream.logs import configure_logging
    from stream_processors.settings import StreamSettings
    from stream_processors.worker import run_worker

    settings = StreamSettings()
    if web_port is not None:
        settings.stream.web_port = web_port
    if web_host is not None:
        settings.stream.web_host = web_host
    configure_logging(settings.log_level, settings.log_json)
    run_worker(settings)


@dims_app.command("load")
def load(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON file with tools and inferences."),
) -> None:
    """Publish every tool and inference of FILE; running workers apply it without a restart."""
    from rich.console import Console

    from funnelstream.kafka import wait_for_broker
    from stream_processors.errors import DimensionFileError
    from stream_processors.publish import load_dimension_file, publish_dimensions
    from stream_processors.settings import StreamSettings

    console = Console(stderr=True)
    try:
        parsed = load_dimension_file(file)
    except DimensionFileError as exc:
        for error in exc.errors:
            console.print(f"{file}: {error}")
        raise typer.Exit(2) from None
    settings = StreamSettings()
    wait_for_broker(settings.kafka)
    published = publish_dimensions(parsed, settings)
    typer.echo(f"published {published.tools} tools and {published.inferences} inferences from {file}")


@dims_app.command("seed-path")
def seed_path() -> None:
    """Print the path of the seed file that ships with the package."""
    from stream_processors.dimensions import SEED_FILE

    typer.echo(str(SEED_FILE))


def main() -> None:
    """``python -m stream_processors``: the two groups without the rest of the project's CLI."""
    root = typer.Typer(no_args_is_help=True, add_completion=False)
    root.add_typer(app, name="stream")
    root.add_typer(dims_app, name="dims")
    root()
