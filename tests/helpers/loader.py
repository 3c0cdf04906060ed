"""Running the warehouse loader in a test until what it inserted is enough, and ``events.enriched``
records in both shapes the loader reads: blocks of rows (with the block header) and plain records."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from funnelstream.blocks import BLOCK_HEADER, BLOCK_VERSION, join_documents

Headers = list[tuple[str, str | bytes | None]]
Record = tuple[bytes | None, bytes, Headers | None]
"""(key, value, headers) as handed to ``Producer.produce``."""

# Rows per record in turn: 0 is a plain one-row record without the header; the rest are blocks,
# of one row too, tracker-sized and larger.
MIXED_SHAPES = (0, 7, 1, 20, 0, 3, 0, 12, 5, 0, 1, 16)


def block_headers() -> Headers:
    """The header of a block, as a producer's argument."""
    return [(BLOCK_HEADER, BLOCK_VERSION)]


def mixed_records(rows: Sequence[tuple[bytes, bytes]], shapes: Sequence[int] = MIXED_SHAPES) -> list[Record]:
    """``(key, document)`` rows, in order, as plain records and blocks in turn (``shapes``); a
    block's key is its first row's."""
    records: list[Record] = []
    start = 0
    for shape in itertools.cycle(shapes):
        if start >= len(rows):
            return records
        if shape == 0:
            key, document = rows[start]
            records.append((key, document, None))
            start += 1
        else:
            part = rows[start : start + shape]
            records.append((part[0][0], join_documents([document for _, document in part]), block_headers()))
            start += len(part)
    return records


def run_loader_until(loader: Any, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Set up ``loader`` and run it in a thread until ``done()`` holds or ``timeout_s`` passes; then
    stop it (it commits what it inserted) and close it. The caller asserts on what was loaded."""
    loader.setup()
    thread = threading.Thread(target=loader.run, name="test-loader")
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        loader.stop.set()
        thread.join(30)
        loader.close()
