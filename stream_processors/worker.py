"""Run one stream worker until SIGTERM/SIGINT.

On SIGTERM Faust waits for the batch in progress and the output producer is flushed. Each batch's
offsets are committed by the worker once its output and state are acknowledged; a batch cut short
is not committed, so the next owner of its partition processes it again (at-least-once,
collapsed by dedup)."""

from __future__ import annotations

import ctypes

import faust
import mode.loop

from stream_processors.app import create_app
from stream_processors.settings import StreamSettings

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3


def tune_malloc(arenas: int = 2, mmap_threshold: int = 128 * 1024) -> None:
    """glibc gives each thread that allocates its own arena (librdkafka, the executor threads);
    with many arenas the free space left by each batch is spread out and seldom handed back.

    A fixed mmap threshold keeps large buffers (fetch responses, batches of output) in their own
    mappings, returned to the system when freed. Left dynamic, glibc raises the threshold after
    the first such buffer is freed, and later ones are cut from the heap between long-lived
    session state, where their space stays resident."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_ARENA_MAX, arenas)
    libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)


def use_worker_loop() -> None:
    """Faust hands records over one at a time, through tasks and event-loop turns: uvloop's loop
    makes each turn cheaper. Call before the app exists, so every loop it creates is uvloop's."""
    mode.loop.use("uvloop")


def run_worker(settings: StreamSettings) -> None:
    tune_malloc()
    use_worker_loop()
    settings.stream.data_dir.mkdir(parents=True, exist_ok=True)
    app, _runtime = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
