"""``make bench-qa``: every QA check over a synthetic warehouse of N events, on embedded chdb.

Journeys (upload → tool → inference requested → completed → save → score) are generated inside
ClickHouse, spread evenly over ``--days`` days, into a fresh data path built by the real
migrations. Measured: the time to run all checks over the last 24 hours and over the last 7 days
(each check's share too), and the process's peak resident memory. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse.backend import ChdbWarehouse
from clickhouse.migrate import migrate
from clickhouse.qa.checks import CHECKS
from clickhouse.qa.runner import Status, run_checks

STEPS = (
    ("image_uploaded", 0, 1),
    ("tool_selected", 12, 2),
    ("inference_requested", 70, 3),
    ("inference_completed", 73, 3),
    ("image_saved", 130, 4),
    ("score_submitted", 140, 5),
)

_GENERATE = """
INSERT INTO events (event_id, event_type, schema_version, anonymous_id, input_id, session_id, client_ts, sent_at,
    received_at, event_ts, timestamp_flag, is_late, source, funnel_step, tool_id, tool_name, tool_type,
    inference_id, inference_name, inference_type, unknown_dimension, job_id, is_bot, properties, enriched_at)
SELECT
    reinterpretAsUUID(MD5(concat('event', toString(j), step.1))),
    step.1,
    1,
    concat('anon-', toString(j % {devices:UInt64})),
    reinterpretAsUUID(MD5(concat('input', toString(j)))),
    concat('session-', toString(j)),
    at,
    at + INTERVAL 1 SECOND,
    at + INTERVAL 1200 MILLISECOND,
    at,
    'ok',
    false,
    'web',
    step.3,
    if(step.1 = 'tool_selected', 1 + j % 3, NULL),
    if(step.1 = 'tool_selected', ['rectangle', 'brush', 'segmentation'][1 + j % 3], NULL),
    if(step.1 = 'tool_selected', if(j % 3 = 2, 'ai_assist', 'manual'), NULL),
    if(inferring, 1 + j % 3, NULL),
    if(inferring, ['remove_object', 'enhance', 'deblur'][1 + j % 3], NULL),
    if(inferring, ['inpainting', 'super_resolution', 'deblurring'][1 + j % 3], NULL),
    false,
    if(step.3 >= 3, reinterpretAsUUID(MD5(concat('job', toString(j)))), NULL),
    false,
    '{}',
    at + INTERVAL 1500 MILLISECOND
FROM (
    SELECT j, step, start + toIntervalSecond(step.2) AS at,
        step.1 IN ('inference_requested', 'inference_completed') AS inferring
    FROM (
        SELECT number AS j,
            {end:DateTime64(3, 'UTC')} - toIntervalMillisecond(intDiv(number * {span_ms:UInt64}, {journeys:UInt64}))
                AS start
        FROM numbers({journeys:UInt64})
    )
    ARRAY JOIN STEPS_LITERAL AS step
)
"""


def _generate(warehouse: ChdbWarehouse, events: int, days: int, end: datetime) -> int:
    journeys = max(events // len(STEPS), 1)
    steps = "[" + ", ".join(f"('{name}', {offset}, {depth})" for name, offset, depth in STEPS) + "]"
    warehouse.command(
        _GENERATE.replace("STEPS_LITERAL", steps),
        {
            "journeys": journeys,
            "devices": max(journeys // 2, 1),
            "span_ms": days * 86_400_000,
            "end": end,
        },
    )
    return journeys * len(STEPS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=8)
    args = parser.parse_args(argv)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with tempfile.TemporaryDirectory(prefix="funnelstream-bench-qa-") as tmp:
        warehouse = ChdbWarehouse(str(Path(tmp) / "chdb"), "funnelstream")
        try:
            migrate(warehouse)
            started = time.perf_counter()
            loaded = _generate(warehouse, args.events, args.days, end)
            generate_s = time.perf_counter() - started
            figures: dict[str, object] = {"events": loaded, "days": args.days, "generate_s": round(generate_s, 2)}
            for label, hours in (("day", 24), ("week", 24 * 7)):
                started = time.perf_counter()
                run = run_checks(warehouse, CHECKS, end - timedelta(hours=hours), end)
                elapsed = time.perf_counter() - started
                errors = [r.check.name for r in run.results if r.status is Status.ERROR]
                if errors:
                    print(f"checks could not run: {errors}", file=sys.stderr)
                    return 1
                figures[f"all_checks_{label}_s"] = round(elapsed, 3)
                # The synthetic data is clean; a check that fires on it is a bug in the check.
                figures[f"failed_{label}"] = [r.check.name for r in run.results if r.status is Status.FAIL]
                figures[f"slowest_{label}"] = max(
                    ((r.check.name, round(r.duration_ms / 1000, 3)) for r in run.results), key=lambda item: item[1]
                )
                print(f"{label}: " + ", ".join(f"{r.check.name} {r.duration_ms:.0f} ms" for r in run.results))
        finally:
            warehouse.close()
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
