"""``funnelstream inference …``, ``funnelstream dataset …`` and ``funnelstream forget``.

Heavy imports (torch, models, clients) stay inside the commands so ``funnelstream --help`` is quick.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="The inference service: SAM proposals and restoration jobs.", no_args_is_help=True)
dataset_app = typer.Typer(help="Retraining datasets of input / mask / result pairs.", no_args_is_help=True)
forget_app = typer.Typer(help="Delete one person's images and events.")
console = Console(stderr=True)


@app.command("serve")
def serve(
    port: int | None = typer.Option(None, help="HTTP port for /readyz and /metrics (default FS_INFERENCE__PORT)."),
    host: str | None = typer.Option(None, help="Interface to bind (default FS_INFERENCE__HOST)."),
) -> None:
    """Load the models, consume inference jobs until SIGTERM, then drain and exit."""
    from funnelstream.logs import configure_logging
    from inference_service.server import serve as run_server
    from inference_service.settings import InferenceSettings

    settings = InferenceSettings()
    overrides = {key: value for key, value in {"port": port, "host": host}.items() if value is not None}
    if overrides:
        settings = settings.model_copy(update={"inference": settings.inference.model_copy(update=overrides)})
    configure_logging(settings.log_level, settings.log_json)
    raise typer.Exit(run_server(settings))


@app.command("models")
def models() -> None:
    """Load every configured model once and show what serves each task."""
    from rich.table import Table

    from inference_service.models.registry import ModelRegistry
    from inference_service.settings import InferenceSettings

    registry = ModelRegistry.load(InferenceSettings().inference.model_copy(update={"warmup": False}))
    table = Table("task", "model", "version", "device", "checkpoint", "load s")
    for info in registry.infos:
        table.add_row(info.task, info.name, info.version, info.device, info.checkpoint or "-", f"{info.load_s:.2f}")
    Console().print(table)


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
    out: Path = typer.Option(Path("datasets"), "--out", help="Local folder for the manifest."),
    download: Path | None = typer.Option(None, "--download", help="Also download the images here."),
) -> None:
    """Select the input / mask / result pairs of a date range into a Parquet manifest."""
    from clickhouse.retraining import DatasetFilter, export_dataset
    from inference_service.settings import InferenceSettings

    start, end = _day(from_day, "--from"), _day(to_day, "--to")
    if end < start:
        raise typer.BadParameter(f"{to_day} is before --from {from_day}", param_hint="--to")
    selection = DatasetFilter(start, end, min_score, inference_type, model_version)
    summary = export_dataset(InferenceSettings(), selection, name=name, out_dir=out, download_dir=download)
    console.print(f"{summary.rows} pairs → {summary.local_path} and s3://{summary.bucket}/{summary.object_key}")
    if download is not None:
        console.print(f"{summary.downloaded} images in {download}")


@forget_app.callback(invoke_without_command=True)
def forget(
    anonymous_id: str | None = typer.Option(None, "--anonymous-id", help="The device id to forget."),
    user_id: str | None = typer.Option(None, "--user-id", help="The user id to forget (every device it used)."),
) -> None:
    """Delete a person's images (inputs, masks, results, proposals) and events, and report the counts."""
    from clickhouse.forget import forget_person
    from inference_service.settings import InferenceSettings

    if (anonymous_id is None) == (user_id is None):
        raise typer.BadParameter("give exactly one of --anonymous-id and --user-id", param_hint="--anonymous-id")
    report = forget_person(InferenceSettings(), anonymous_id=anonymous_id, user_id=user_id)
    for line in report.lines():
        typer.echo(line)
