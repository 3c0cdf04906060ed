"""``make bench-pipeline``: the highest rate ``funnelstream load --local`` sustains for a minute.

The four services start once (``ops.pipeline.local_pipeline``); trials of load (``ops.load.drive``,
then ``verify``) then offer rising rates: from ``--start-rate`` times ``--factor`` until a trial fails
(divided by it until one passes, if the first fails), then ``--bisect-steps`` geometric midpoints
between the highest pass and the lowest fail. A trial passes when load's verdict is ok (every
202-accepted event in the warehouse exactly once), freshness p99 (202 → ``inserted_at``) is within
``--max-p99-ms``, and the rate was sustained: accepted events/s at least ``SUSTAINED_SHARE`` of the
rate offered (load counts a batch refused until it gives up as not accepted, not as lost, so the
verdict alone would pass a collector that sheds load). Before each trial, outside its timed window,
the generator draws the trial's journeys (rate × duration × 1.1, up to ``--prefill-cap``; past it
they are sent again under fresh ids), so sending costs about a microsecond an event and the figure
is the pipeline's, not the generator's. Between trials the pipeline drains (the warehouse stops
growing for a few seconds), so no trial inherits the last one's backlog.

``--services-from DIR`` runs the services from another checkout (say a worktree of the commit
before a change): its children import DIR's code (``PYTHONPATH=DIR`` with ``PYTHONSAFEPATH``, so the
working directory does not come first), on this checkout's local stack; the generator and the
verdict stay this checkout's. So before and after are measured by one bench, back to back, and
``services_from`` names the commit measured.

The ceiling, measured in the same run before the services start: the events/s the same generator
(``ops.load.drive``, pooled journeys, batches and connection limits) gets accepted by a bare HTTP
server that answers 202 to everything, in a child process as the collector is. A
``max_sustained_events_per_s`` near it means the generator, not the pipeline, is the limit. The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from clickhouse.client import ApiReader
from clickhouse.errors import WarehouseError, WarehouseUnavailable
from infra.stack import InfraSettings
from ops.load import POOL_EVENTS, EventFactory, LoadOptions, drive, send_figures, verify, wait_until_visible
from ops.pipeline import Ports, local_pipeline

SUSTAINED_SHARE = 0.95
"""Accepted events/s over the rate offered that still counts as sustaining it."""
SETTLE_S = 5.0
"""Seconds without a new row in the warehouse that count as drained."""
PREFILL_MARGIN = 1.1
"""Journeys drawn before a trial, over the events it sends at its rate: a batch's rounding and more."""
PREFILL_CAP = 1_500_000
"""At most this many drawn (about 1 KB each); a longer trial sends them again under fresh ids."""


# --- the search ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    start_rate: float = 2_000.0
    factor: float = 1.5
    max_rate: float = 200_000.0
    min_rate: float = 100.0
    bisect_steps: int = 2


def _bracket_index(outcomes: Sequence[tuple[float, bool]]) -> int | None:
    """Index of the first trial whose outcome differs from the first trial's: the search has a pass and a
    fail from there on; ``None`` while every trial agrees."""
    for index, (_, passed) in enumerate(outcomes):
        if passed != outcomes[0][1]:
            return index
    return None


def next_rate(outcomes: Sequence[tuple[float, bool]], search: Search) -> float | None:
    """The rate of the next trial given ``(rate, passed)`` of those so far, or ``None`` when done."""
    if not outcomes:
        return search.start_rate
    bracket = _bracket_index(outcomes)
    if bracket is None:
        rate, passed = outcomes[-1]
        if passed:
            return None if rate >= search.max_rate else min(search.max_rate, round(rate * search.factor))
        return None if rate <= search.min_rate else max(search.min_rate, round(rate / search.factor))
    if len(outcomes) - 1 - bracket >= search.bisect_steps:
        return None
    low = max(rate for rate, passed in outcomes if passed)
    high = min((rate for rate, passed in outcomes if not passed and rate > low), default=None)
    if high is None:  # only fails below the best pass: noise, and nothing left to bracket
        return None
    middle = round(math.sqrt(low * high))
    # Rates a step apart have nothing between them worth a trial.
    return None if middle in (round(low), round(high)) else middle


def max_sustained(outcomes: Sequence[tuple[float, bool]]) -> float | None:
    """The highest passing rate below every failing one (a pass above a fail would be noise, not a
    rate the pipeline sustains); ``None`` if nothing passed."""
    lowest_fail = min((rate for rate, passed in outcomes if not passed), default=math.inf)
    passes = [rate for rate, passed in outcomes if passed and rate < lowest_fail]
    return max(passes) if passes else None


def trial_passed(figures: dict[str, Any], max_p99_ms: float) -> bool:
    """load's verdict ok, freshness p99 within bound, and the rate offered accepted (see the module)."""
    p99 = figures.get("freshness_p99_ms")
    return (
        bool(figures.get("ok"))
        and p99 is not None
        and p99 <= max_p99_ms
        and figures.get("not_accepted", 0) == 0
        and figures.get("accepted_per_s", 0.0) >= SUSTAINED_SHARE * figures["rate"]
    )


# --- the ceiling: the generator against a server that only says 202 --------------------------------

_ANSWER = b'{"rejected":[]}'


async def _answer_202(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(_ANSWER), _ANSWER)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _serve_202(sock: socket.socket) -> None:
    async def serve() -> None:
        server = await asyncio.start_server(_answer_202, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def _wait_answering(port: int, timeout_s: float = 60.0) -> None:
    """Until the child has imported and answers, so its start-up is not timed as the generator's."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.post(f"http://127.0.0.1:{port}/v1/batch", content=b"{}", timeout=2).status_code == 202:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def generator_ceiling(duration_s: float, batch_size: int) -> dict[str, Any]:
    """Events/s ``ops.load.drive`` gets accepted, open loop at a rate no generator reaches, by a bare
    server in another process; the elapsed time runs until the last answer, the journeys drawn before."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_serve_202, args=(sock,), daemon=True)
    server.start()
    try:
        _wait_answering(port)
        options = LoadOptions(
            rate=10_000_000.0, duration_s=duration_s, batch_size=batch_size, ingest_url=f"http://127.0.0.1:{port}"
        )
        # Prefilled and cycling under fresh ids, as in a trial longer than its pool: the dearer path.
        factory = EventFactory(seed=1)
        factory.prefill(POOL_EVENTS)
        started = time.monotonic()
        log = asyncio.run(drive(options, factory))
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.join(10)
        sock.close()
    return {
        "generator_ceiling_events_per_s": round(len(log.accepted_at_ms) / elapsed, 1),
        "generator_ceiling_answers": dict(log.statuses),
    }


# --- trials ----------------------------------------------------------------------------------------


def prefill_events(rate: float, duration_s: float, cap: int = PREFILL_CAP) -> int:
    """Journeys to draw before a trial of ``rate`` for ``duration_s``: all it sends, up to ``cap``."""
    return max(1, min(cap, math.ceil(round(rate * duration_s * PREFILL_MARGIN, 6))))


def run_trial(
    options: LoadOptions, warehouse_url: str, read_key: str, verify_timeout_s: float, prefill_cap: int
) -> dict[str, Any]:
    """One load run as ``ops.load.run_load`` does it, its journeys drawn before the timed window."""
    seed = options.seed if options.seed is not None else random.randrange(10**8, 10**9)
    pooled = prefill_events(options.rate, options.duration_s, prefill_cap)
    factory = EventFactory(seed, options.malformed_share, pool_events=pooled)
    started = time.monotonic()
    factory.prefill(pooled)
    prefill_s = time.monotonic() - started
    # A million pooled dicts would make every full collection walk them mid-trial; they live until its end.
    gc.collect()
    gc.freeze()
    try:
        log = asyncio.run(drive(options, factory))
        warehouse = ApiReader(warehouse_url, read_key)
        try:
            verdict = verify(warehouse, factory, log, verify_timeout_s)
        finally:
            warehouse.close()
    finally:
        gc.unfreeze()
    return {
        "run": factory.prefix.rstrip("-"),
        **send_figures(options, log),
        **verdict.figures(),
        "ok": verdict.ok,
        "prefill_events": factory.pooled,
        "prefill_s": round(prefill_s, 1),
    }


def _git_commit(checkout: Path) -> str:
    """The short commit of ``checkout``, with ``+changes`` when its tracked files differ from it."""
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{commit}+changes" if changed else commit


def services_env(checkout: Path) -> dict[str, str]:
    """Environment under which ``python -m ops.cli`` children import ``checkout``'s code, on this
    checkout's local stack (absolute paths: the other code resolves its own defaults)."""
    settings = InfraSettings()
    return {
        # -m puts the working directory first on sys.path, ahead of PYTHONPATH; safe-path leaves it out.
        "PYTHONPATH": str(checkout),
        "PYTHONSAFEPATH": "1",
        "FS_PATHS__DATA_DIR": str(settings.paths.data_dir.resolve()),
        "FS_STACK__DIR": str(settings.stack.dir.resolve()),
    }


def services_code(env: dict[str, str]) -> str:
    """Where a service child under ``env`` imports ``ops.cli`` from."""
    probe = [sys.executable, "-c", "import ops.cli; print(ops.cli.__file__)"]
    return subprocess.run(probe, check=True, capture_output=True, text=True, env={**os.environ, **env}).stdout.strip()


@contextlib.contextmanager
def environment(changes: dict[str, str]) -> Iterator[None]:
    """``changes`` in this process's environment, which the services it starts inherit, then undone."""
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _events_in_warehouse(reader: ApiReader) -> int | None:
    try:
        return int(reader.query_rows("SELECT count() AS n FROM events")[0]["n"])
    except (WarehouseUnavailable, WarehouseError):
        return None


def drain(warehouse_url: str, read_key: str, figures: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Wait until the warehouse has stopped growing for ``SETTLE_S`` (a backlog worked off, the loader's
    last flushes), then count the trial's events once more: late ones arrive here, lost ones never do."""
    started = time.monotonic()
    reader = ApiReader(warehouse_url, read_key)
    drained: dict[str, Any] = {}
    try:
        last, quiet_since = _events_in_warehouse(reader), time.monotonic()
        while time.monotonic() - quiet_since < SETTLE_S and time.monotonic() - started < timeout_s:
            time.sleep(1.0)
            count = _events_in_warehouse(reader)
            if count is None or count != last:
                last, quiet_since = count, time.monotonic()
        if "run" in figures:
            drained["visible_after_drain"], _ = wait_until_visible(
                reader, f"{figures['run']}-", int(figures["accepted"]), timeout_s=0
            )
    finally:
        reader.close()
    return {**drained, "drain_s": round(time.monotonic() - started, 1)}


def trial_line(figures: dict[str, Any], passed: bool) -> dict[str, Any]:
    keys = (
        "rate",
        "duration_s",
        "sent",
        "accepted",
        "accepted_per_s",
        "not_accepted",
        "retries",
        "lost",
        "duplicated",
        "freshness_p50_ms",
        "freshness_p99_ms",
        "freshness_stream_stage_p99_ms",
        "freshness_loader_stage_p99_ms",
        "request_p99_ms",
        "generator_waited_s",
        "prefill_events",
        "prefill_s",
        "visible_after_drain",
        "drain_s",
        "wall_s",
        "ok",
    )
    line = {key: figures.get(key) for key in keys}
    if "error" in figures:
        line["error"] = figures["error"]
    return {**line, "passed": passed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start-rate", type=float, default=Search.start_rate)
    parser.add_argument("--factor", type=float, default=Search.factor)
    parser.add_argument("--max-rate", type=float, default=Search.max_rate)
    parser.add_argument("--min-rate", type=float, default=Search.min_rate)
    parser.add_argument("--bisect-steps", type=int, default=Search.bisect_steps)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of sending per trial.")
    parser.add_argument("--batch-size", type=int, default=LoadOptions.batch_size)
    parser.add_argument("--malformed-share", type=float, default=0.0)
    parser.add_argument("--max-p99-ms", type=float, default=2_000.0, help="Freshness p99 a passing trial stays within.")
    parser.add_argument("--verify-timeout", type=float, default=180.0, help="Seconds load waits for every event.")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="Seconds to wait for a backlog to clear.")
    parser.add_argument("--ceiling-duration", type=float, default=15.0)
    parser.add_argument("--port-base", type=int, default=18_500, help="Four ports from here for the services.")
    parser.add_argument(
        "--prefill-cap", type=int, default=PREFILL_CAP, help="Most journeys drawn before a trial; past it, resent."
    )
    parser.add_argument(
        "--services-from",
        type=Path,
        help="A checkout whose code the services run (the bench's generator and verdict stay this one's).",
    )
    args = parser.parse_args(argv)
    if args.factor <= 1:
        parser.error("--factor must be above 1")
    search = Search(args.start_rate, args.factor, args.max_rate, args.min_rate, args.bisect_steps)
    checkout = (args.services_from or Path(__file__).resolve().parents[2]).resolve()
    env = services_env(checkout) if args.services_from else {}
    code = services_code(env)
    if not Path(code).is_relative_to(checkout):
        parser.error(f"the services would import {code}, not the code under {checkout}")

    started = time.monotonic()
    # Before the services start, so the generator has the machine to itself.
    ceiling = generator_ceiling(args.ceiling_duration, args.batch_size)
    print(json.dumps(ceiling), file=sys.stderr, flush=True)
    base = args.port_base
    outcomes: list[tuple[float, bool]] = []
    trials: list[dict[str, Any]] = []
    pipeline_started = time.monotonic()
    # After the ceiling: its server child must import this checkout's bench, whatever the services run.
    with (
        environment(env),
        local_pipeline("bench-pipeline", Ports.from_base(base)) as pipeline,
    ):
        startup_s = time.monotonic() - pipeline_started
        options = LoadOptions(
            duration_s=args.duration,
            batch_size=args.batch_size,
            malformed_share=args.malformed_share,
            ingest_url=pipeline.ingest_url,
        )
        while (rate := next_rate(outcomes, search)) is not None:
            trial_started = time.monotonic()
            try:
                trial = replace(options, rate=rate)
                figures = run_trial(
                    trial, pipeline.warehouse_url, pipeline.warehouse_read_key, args.verify_timeout, args.prefill_cap
                )
            except Exception as exc:  # a trial that breaks the run has failed; the search goes on
                figures = {"rate": rate, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            figures |= drain(pipeline.warehouse_url, pipeline.warehouse_read_key, figures, args.drain_timeout)
            figures["wall_s"] = round(time.monotonic() - trial_started, 1)
            passed = trial_passed(figures, args.max_p99_ms)
            outcomes.append((rate, passed))
            trials.append(trial_line(figures, passed))
            print(json.dumps(trials[-1]), file=sys.stderr, flush=True)
    best = max_sustained(outcomes)
    ceiling_rate = ceiling["generator_ceiling_events_per_s"]
    result = {
        "max_sustained_events_per_s": best,
        "services_from": _git_commit(checkout),
        "services_dir": str(checkout),
        **ceiling,
        "ratio_to_generator_ceiling": round(best / ceiling_rate, 3) if best and ceiling_rate else None,
        "capped_at_max_rate": bool(outcomes) and all(passed for _, passed in outcomes) and best == search.max_rate,
        "duration_s": args.duration,
        "max_p99_ms": args.max_p99_ms,
        "sustained_share": SUSTAINED_SHARE,
        "batch_size": args.batch_size,
        "prefill_cap": args.prefill_cap,
        "trials": trials,
        "startup_s": round(startup_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))
    return 0 if best is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
