"""CPU per event of the stream worker's processing core, in process, without Kafka or Faust:
``StreamProcessor.process`` and ``commit`` over ``raw_blocks(raw_stream(events, events / 2), 4)``,
in runs of about 5,000 events. The last line printed is one JSON object.

    python -m ops.bench.stream_core [events] [--profile]

Records are what the worker reads: one per collector block, under the block header. A core
without blocks (``RawRecord`` has no ``block``; run from an older checkout) gets one plain record
per event instead, as the collector wrote them before. The workload is frozen out of the garbage
collector's view before timing: its objects are not the worker's heap.
"""

from __future__ import annotations

import cProfile
import dataclasses
import gc
import json
import pstats
import sys
import time
from datetime import UTC, datetime
from typing import Any

from funnelstream.blocks import BLOCK_VERSION
from ops.journeys import raw_blocks, raw_stream
from stream_processors.dimensions import SEED_FILE, DimensionStore, apply_all, read_dimension_file
from stream_processors.enrich import Enricher, UserAgentParser
from stream_processors.processor import MemoryStateStore, RawRecord, StreamProcessor

RUN_EVENTS = 5_000


class TableLikeStore(MemoryStateStore):
    """The worker's table store keeps values as they are; no JSON round trip per write."""

    def put(self, partition: int, key: str, value: Any) -> None:
        self.data[key] = value


def main() -> None:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    events = int(args[0]) if args else 200_000
    blocks = raw_blocks(raw_stream(events, events // 2), 4)
    has_blocks = "block" in {field.name for field in dataclasses.fields(RawRecord)}
    offsets: dict[int, int] = {}
    runs: list[list[RawRecord]] = [[]]
    count = 0
    for block in blocks:
        pieces = [(block.value, block.count)] if has_blocks else [(doc, 1) for doc in block.value.split(b"\n")]
        for value, n in pieces:
            offset = offsets.get(block.partition, 0)
            offsets[block.partition] = offset + 1
            extra = (BLOCK_VERSION,) if has_blocks else ()
            runs[-1].append(RawRecord(block.partition, offset, block.key, value, "events.raw", *extra))
            count += n
            if count >= RUN_EVENTS:
                runs.append([])
                count = 0
    total = sum(block.count for block in blocks)
    dimensions = DimensionStore()
    apply_all(dimensions, read_dimension_file(SEED_FILE, datetime(2026, 1, 1, tzinfo=UTC)))
    processor = StreamProcessor(TableLikeStore(), Enricher(dimensions, UserAgentParser(10_000)))
    gc.collect()
    gc.freeze()
    profile = cProfile.Profile() if "--profile" in sys.argv else None
    if profile is not None:
        profile.enable()
    started = time.process_time()
    for run in runs:
        processor.commit(processor.process(run))
    cpu = time.process_time() - started
    if profile is not None:
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    counters = processor.counters
    figures = {
        "records": sum(map(len, runs)),
        "events": total,
        "accepted": counters.accepted,
        "duplicates": counters.duplicates,
        "dead_letters": counters.dead_letters,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_event": round(cpu / total * 1e6, 2),
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
