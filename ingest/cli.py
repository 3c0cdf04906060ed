"""``funnelstream ingest ...``"""

from __future__ import annotations

import gc

import typer

app = typer.Typer(help="The HTTP collector.", no_args_is_help=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 in a container."),
    port: int = typer.Option(8000),
) -> None:
    """Run the collector (one uvicorn worker; scale by running more processes)."""
    import uvicorn

    from funnelstream.logs import configure_logging
    from funnelstream.serving import ConnectionLimits, uvicorn_options
    from ingest.app import create_app
    from ingest.server import CoalescingHttpToolsProtocol, keep_freed_heap
    from ingest.settings import IngestSettings

    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_json)
    keep_freed_heap()
    app = create_app(settings)
    # Everything imported so far lives as long as the process: keep it out of the collector's full
    # passes, which otherwise walk a few hundred thousand objects and show up as p99 spikes.
    gc.freeze()
    # A 500-event batch allocates several thousand container objects that die by reference counting
    # when the request is answered; at the default threshold (700) the collector would run a dozen
    # times per batch and promote the batch's live events to older generations it rescans later.
    gc.set_threshold(50_000, 20, 20)
    config = settings.ingest
    limits = ConnectionLimits(
        header_timeout_s=config.header_timeout_s,
        body_timeout_s=config.body_timeout_s,
        max_header_bytes=config.max_header_bytes,
        max_header_count=config.max_header_count,
        keep_alive_timeout_s=config.keep_alive_timeout_s,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        **uvicorn_options(limits, CoalescingHttpToolsProtocol),
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.ingest.delivery_timeout_s) + 5,
    )
