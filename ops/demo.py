"""``make demo``: the whole story on the embedded default, from nothing to an A/B answer.

Starts the local stack and the four services, sends a few thousand simulated users through the real
HTTP API (assignment, then their funnel events, with planted effects) and a few real inference jobs,
waits for the warehouse to catch up, then shows the funnel by variant, the task-time comparison, the
sample-ratio check, a data-quality summary and an HTML report.

The console shows the story and nothing else: this process's logging (librdkafka's lines among it,
at their level, through ``funnelstream.kafka``'s clients) and the stderr of the tools it runs go to
``demo.log`` beside the services' logs, never to the terminal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clickhouse.client import ApiReader
from clickhouse.experiments.warehouse import fetch_results_via_api
from clickhouse.settings import WarehouseSettings
from funnelstream.logs import JsonFormatter
from funnelstream.settings import ServiceSettings
from infra.stack import up
from ingest.settings import DEV_SERVER_WRITE_KEY, DEV_WRITE_KEY
from ops.experiments.report import render_html, render_terminal
from ops.journeys import (
    EXPERIMENT_KEY,
    PLANTED_TASK_TIME_FACTOR,
    collector_payloads,
    devices,
    journeys,
    live_spec,
)
from ops.pipeline import LocalPipeline, Ports
from ops.sample_images import sample_mask_png, sample_png, upload_image

INGEST_PORT = 8000
WAREHOUSE_PORT = 8100
INFERENCE_PORT = 8200
STREAM_WEB_PORT = 6066
EVENTS_PER_REQUEST = 250
WINDOW = timedelta(hours=6)
"""The simulated visits start over this long before the run."""


@dataclass
class DemoOptions:
    users: int = 2000
    seed: int = 7
    jobs: int = 6
    serve: bool = False
    report_dir: Path = field(default_factory=lambda: ServiceSettings().paths.data_dir / "reports")
    timeout_s: float = 600.0


def run_demo(console: Console, options: DemoOptions | None = None) -> None:
    options = options or DemoOptions()
    started = time.monotonic()
    demo_dir = ServiceSettings().paths.data_dir / "demo"
    demo_log = _log_to_file(demo_dir / "logs" / "demo.log")
    console.rule("[bold]Funnelstream demo")
    console.print(f"   log: {demo_log}")
    console.print("[bold]1.[/] local stack: Kafka (KRaft) and SeaweedFS S3 on loopback; ClickHouse is embedded chdb")
    for name, state in up().items():
        console.print(f"   {name}: {state}")

    # A fresh warehouse, stream state and private topics per run: the answer shown is about this
    # run's users only.
    shutil.rmtree(demo_dir / "chdb", ignore_errors=True)
    shutil.rmtree(demo_dir / "stream", ignore_errors=True)
    shutil.rmtree(demo_dir / "experiments", ignore_errors=True)
    run_id = uuid.uuid4().hex[:8]
    pipeline = LocalPipeline(
        demo_dir,
        Ports(INGEST_PORT, WAREHOUSE_PORT, INFERENCE_PORT, STREAM_WEB_PORT),
        ServiceSettings().kafka,
        namespace=f"demo-{run_id}",
        # The simulation replays six hours of traffic in one go: a backfill, so the sessionizer must
        # accept events that far behind its watermark rather than flag them late.
        env={"FS_STREAM__ALLOWED_LATENESS_S": str(int(WINDOW.total_seconds()) + 3600)},
    )
    # The simulation, the jobs and the report below talk to this run's topics and warehouse.
    os.environ.update(pipeline.env)
    console.print("[bold]2.[/] services: warehouse (loader + query API), stream processor, inference, collector")
    try:
        with pipeline:
            for service in pipeline.services.values():
                console.print(f"   {service.name}: ready (log {service.log})")
            sent = asyncio.run(_simulate_users(console, options, run_id))
            job_ids = asyncio.run(_real_jobs(console, options.jobs))
            _wait_for_warehouse(console, sent, options.timeout_s)
            _show_results(console, options, sent, job_ids, demo_log)
            console.print(f"[bold]demo page[/]: http://127.0.0.1:{INGEST_PORT}/demo")
            console.print(f"[bold]workspace[/]: http://127.0.0.1:{WAREHOUSE_PORT}/ui (log in with the read key)")
            console.print(f"finished in {time.monotonic() - started:.0f}s")
            if options.serve:
                console.print("serving; Ctrl-C (or SIGTERM) stops everything")
                signal.signal(signal.SIGTERM, _interrupt)
                while all(service.running for service in pipeline.services.values()):
                    time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")


def _log_to_file(path: Path) -> Path:
    """Send this process's logging to ``path`` (JSON lines, INFO and up), and nothing to the console:
    a warning with no handler configured would reach stderr through logging's last resort."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # One line per request of the simulation would bury everything else.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return path


def _tool(args: list[str], api: str, log: Path, check: bool) -> None:
    """Run ``python -m ops.cli ARGS`` against the warehouse API: its output on the console, its logs
    (stderr) appended to ``log``."""
    with log.open("ab") as stderr:
        subprocess.run(
            [sys.executable, "-m", "ops.cli", *args],
            check=check,
            env={**os.environ, "FS_WAREHOUSE__API_URL": api},
            stderr=stderr,
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@dataclass
class SentSummary:
    run_id: str
    events: list[dict[str, Any]]
    accepted: int
    rejected: int
    window_start: datetime
    window_end: datetime


async def _simulate_users(console: Console, options: DemoOptions, run_id: str) -> SentSummary:
    base = f"http://127.0.0.1:{INGEST_PORT}"
    headers = {"X-Write-Key": DEV_WRITE_KEY}
    now = datetime.now(UTC)
    spec = live_spec(options.users, options.seed, end=now, window=WINDOW)
    assignments: dict[str, str] = {}

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        # Arms come from the collector, as a site's backend gets them: sticky per device and per user.
        units = devices(spec, options.seed)
        with _progress(console) as progress:
            task = progress.add_task("assigning users", total=len(units))
            semaphore = asyncio.Semaphore(16)

            async def assign(anonymous_id: str, user_id: str | None) -> None:
                params = {"anonymous_id": f"{run_id}-{anonymous_id}"}
                if user_id:
                    params["user_id"] = f"{run_id}-{user_id}"
                async with semaphore:
                    # Binding a user id takes a server-side key: the simulation plays the site's backend.
                    server_key = {"X-Write-Key": DEV_SERVER_WRITE_KEY}
                    response = await client.get("/v1/assignments", params=params, headers=server_key)
                response.raise_for_status()
                assignments[anonymous_id] = response.json()["variants"].get(EXPERIMENT_KEY, "control")
                progress.advance(task)

            await asyncio.gather(*(assign(a, u) for a, u in units))

        frame = journeys(spec, options.seed, assign=lambda anonymous_id, _: assignments[anonymous_id])
        timeline = collector_payloads(frame)
        for event in timeline:
            # A fresh run must not collide with an earlier one's event ids in the dedup window.
            event["event_id"] = str(uuid.uuid5(uuid.UUID(event["event_id"]), run_id))
            event["anonymous_id"] = f"{run_id}-{event['anonymous_id']}"
            if "user_id" in event:
                event["user_id"] = f"{run_id}-{event['user_id']}"
        # In time order, as live traffic arrives: the sessionizer sees each device's events in order.
        batches = [timeline[i : i + EVENTS_PER_REQUEST] for i in range(0, len(timeline), EVENTS_PER_REQUEST)]
        accepted = rejected = 0
        with _progress(console) as progress:
            task = progress.add_task("sending events", total=sum(len(b) for b in batches))

            async def send(batch: list[dict[str, Any]]) -> None:
                nonlocal accepted, rejected
                for attempt in range(10):
                    sent_at = datetime.now(UTC).isoformat()
                    async with semaphore:
                        response = await client.post(
                            "/v1/batch", json={"batch": [{**e, "sent_at": sent_at} for e in batch]}
                        )
                    if response.status_code in (429, 503):
                        await asyncio.sleep(float(response.headers.get("Retry-After", 1)) * (1 + attempt / 2))
                        continue
                    response.raise_for_status()
                    body = response.json()
                    accepted += body["accepted"]
                    rejected += len(body["rejected"])
                    progress.advance(task, len(batch))
                    return
                raise RuntimeError("the collector kept answering 429/503")

            for batch in batches:  # one request at a time keeps the time order
                await send(batch)
    arms: dict[str, int] = {}
    for arm in assignments.values():
        arms[arm] = arms.get(arm, 0) + 1
    console.print(
        f"   {len(assignments)} device journeys ({', '.join(f'{k}: {v}' for k, v in sorted(arms.items()))}), "
        f"{accepted} events accepted (202 = durable in Kafka), {rejected} rejected"
    )
    return SentSummary(
        run_id, timeline, accepted, rejected, now - WINDOW - timedelta(hours=1), now + timedelta(hours=1)
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("   {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


async def _real_jobs(console: Console, count: int) -> list[str]:
    """A handful of real restoration jobs on generated images, end to end through the object store."""
    if count <= 0:
        return []
    base = f"http://127.0.0.1:{INGEST_PORT}"
    kinds = [(1, "remove_object"), (2, "enhance"), (3, "deblur")]
    table = Table("job", "inference", "status", "model", "latency ms", title="real inference jobs")
    job_ids = []
    async with httpx.AsyncClient(base_url=base, headers={"X-Write-Key": DEV_WRITE_KEY}, timeout=30) as client:
        for index in range(count):
            inference_id, name = kinds[index % len(kinds)]
            device = f"demo-jobs-{index}"
            image = await upload_image(client, sample_png(512, 384, seed=index), device)
            request: dict[str, Any] = {
                "kind": "restore",
                "input_id": image["input_id"],
                "input_key": image["input_key"],
                "input_token": image["upload_token"],
                "anonymous_id": device,
                "inference_id": inference_id,
                "inference_name": name,
            }
            if name == "remove_object":
                mask = await upload_image(client, sample_mask_png(512, 384), device)
                request |= {"mask_key": mask["input_key"], "mask_token": mask["upload_token"]}
            accepted = (await client.post("/v1/jobs", json=request)).raise_for_status().json()
            job_ids.append(accepted["job_id"])
        for job_id in job_ids:
            deadline = time.monotonic() + 120
            state: dict[str, Any] = {}
            while time.monotonic() < deadline:
                state = (await client.get(f"/v1/jobs/{job_id}")).raise_for_status().json()
                if state["status"] != "queued":
                    break
                await asyncio.sleep(0.5)
            table.add_row(
                job_id[:8],
                str(state.get("kind") or ""),
                str(state.get("status")),
                f"{state.get('model_name') or ''} {state.get('model_version') or ''}",
                f"{state.get('latency_ms') or 0:.0f}",
            )
    console.print(table)
    return job_ids


def _wait_for_warehouse(console: Console, sent: SentSummary, timeout_s: float) -> None:
    reader = ApiReader.of(WarehouseSettings(), f"http://127.0.0.1:{WAREHOUSE_PORT}")
    expected = {e["event_id"] for e in sent.events}
    run_prefix = f"{sent.run_id}-%"
    deadline = time.monotonic() + timeout_s
    with _progress(console) as progress:
        task = progress.add_task("warehouse catching up", total=len(expected))
        visible = 0
        while time.monotonic() < deadline:
            rows = reader.query_rows(
                "SELECT uniqExact(event_id) AS n FROM events WHERE anonymous_id LIKE {prefix:String}",
                {"prefix": run_prefix},
            )
            visible = int(rows[0]["n"])
            progress.update(task, completed=visible)
            if visible >= len(expected):
                break
            time.sleep(1)
    if visible < len(expected):
        raise RuntimeError(f"only {visible} of {len(expected)} events visible after {timeout_s}s")
    console.print(f"   all {visible} events visible in ClickHouse")


def _show_results(console: Console, options: DemoOptions, sent: SentSummary, job_ids: list[str], log: Path) -> None:
    options.report_dir.mkdir(parents=True, exist_ok=True)
    api = f"http://127.0.0.1:{WAREHOUSE_PORT}"
    start, end = sent.window_start.isoformat(), sent.window_end.isoformat()
    console.rule("[bold]Funnel by variant (windowFunnel, unit = image)")
    funnel_html = options.report_dir / "funnel.html"
    _tool(["report", "funnel", "--from", start, "--to", end, "--breakdown", "variant", "--html", str(funnel_html)],
          api, log, check=True)  # fmt: skip

    console.rule("[bold]A/B: Segmentation Tool (treatment) vs manual masking (control)")
    read_key = WarehouseSettings().warehouse.read_key.get_secret_value()
    results = fetch_results_via_api(api, read_key, EXPERIMENT_KEY, sequential=False)
    render_terminal(results, console)
    experiment_html = options.report_dir / "experiment.html"
    experiment_html.write_text(render_html(results))
    _compare_with_planted(console, results)

    console.rule("[bold]Data quality")
    _tool(["qa", "run", "--from", start, "--to", end], api, log, check=False)
    console.print(f"reports: {funnel_html}, {experiment_html}")


def _compare_with_planted(console: Console, results: Any) -> None:
    duration = results.task_duration
    if duration is None or not duration.mean.comparisons:
        console.print("[red]no task-duration comparison in the results[/]")
        return
    comparison = duration.mean.comparisons[0]
    planted = PLANTED_TASK_TIME_FACTOR - 1
    low, high = comparison.lift_ci_low, comparison.lift_ci_high
    covered = low is not None and high is not None and low <= planted <= high
    console.print(
        f"planted task-time change {planted:+.0%}; measured {comparison.relative_lift:+.1%} "
        f"(95% CI {low:+.1%} … {high:+.1%}, p={comparison.p_value:.2g}) → "
        + ("[green]the planted effect is inside the CI[/]" if covered else "[red]outside the CI[/]")
    )
