"""Run one stream worker until SIGTERM/SIGINT.

On SIGTERM Faust waits for the batch in progress and the output producer is flushed. Each batch's
offsets are committed by the worker once its output and state are acknowledged; a batch cut short
is not committed, so the next owner of its partition processes it again (at-least-once,
collapsed by dedup)."""

from __future__ import annotations

import ctypes

import faust

from stream_processors.app import create_app
from stream_processors.settings import StreamSettings

M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own arena (librdkafka, the executor threads);
    with many arenas the free space left by each batch is spread out and seldom handed back."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_ARENA_MAX, arenas)


def run_worker(settings: StreamSettings) -> None:
    limit_malloc_arenas()
    settings.stream.data_dir.mkdir(parents=True, exist_ok=True)
    app, _runtime = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
