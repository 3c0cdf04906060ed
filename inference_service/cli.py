"""``funnelstream inference …``: serve the job worker, list the models.

Heavy imports (torch, models, clients) stay inside the commands so ``funnelstream --help`` is quick.
"""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(help="The inference service: SAM proposals and restoration jobs.", no_args_is_help=True)


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
