"""End-to-end freshness: collector → stream processors → loader → ``events``; last line is JSON.

Starts ``ingest serve``, ``stream worker`` and ``warehouse serve`` as processes on topics of their
own (the local broker must run: ``make up``), sends the simulator's editing journeys through ``POST /v1/batch``
at ``--rate`` events/s, and reads P50/P90/P99 of ``inserted_at − received_at`` (ingest stamps
``received_at`` just before the produce that precedes its 202) from the warehouse API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from funnelstream.load import EventFactory
from funnelstream.settings import KafkaConfig
from ingest.settings import DEV_WRITE_KEY


def _create_topics(kafka: KafkaConfig, names: list[str], partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient(kafka.client_config())
    for future in admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    ).values():
        future.result()


def _delete_topics(kafka: KafkaConfig, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    for future in AdminClient(kafka.client_config()).delete_topics(names).values():
        # Best effort: a topic left behind is harmless, a failed cleanup must not hide the figures.
        with contextlib.suppress(Exception):
            future.result()


def _wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


async def _send(url: str, rate: float, duration_s: float, batch_size: int) -> tuple[int, int]:
    """Open loop: one batch every batch_size / rate seconds, whatever the answers take."""
    interval = batch_size / rate
    sent = accepted = 0
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=64)) as client:
        pending: set[asyncio.Task[httpx.Response]] = set()
        start = time.monotonic()
        index = 0
        # The simulator's editing journeys (the same traffic as ``funnelstream load``): many devices,
        # each with a handful of events, as a collector sees them.
        factory = EventFactory(seed=int(time.time()))
        while time.monotonic() - start < duration_s:
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            batch = [{**event, "sent_at": now} for event in factory.batch(batch_size)]
            body = orjson.dumps({"batch": batch})
            task = asyncio.create_task(
                client.post(
                    url, content=body, headers={"X-Write-Key": DEV_WRITE_KEY, "Content-Type": "application/json"}
                )
            )
            pending.add(task)
            sent += batch_size
            index += 1
            done = {t for t in pending if t.done()}
            for finished in done:
                if finished.result().status_code == 202:
                    accepted += batch_size
            pending -= done
            await asyncio.sleep(max(0.0, start + index * interval - time.monotonic()))
        for response in await asyncio.gather(*pending):
            if response.status_code == 202:
                accepted += batch_size
    return sent, accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=2)
    args = parser.parse_args(argv)

    kafka = KafkaConfig()
    suffix = uuid.uuid4().hex[:8]
    topics = {name: f"bench.{name}.{suffix}" for name in ("raw", "enriched", "sessions", "dlq", "tools", "inferences")}
    _create_topics(kafka, list(topics.values()), args.partitions)
    workdir = Path(tempfile.mkdtemp(prefix="fs-bench-freshness-"))
    ports = {"ingest": 18_300, "stream": 18_301, "warehouse": 18_302}
    env = {
        **os.environ,
        "FS_LOG_LEVEL": "WARNING",
        "FS_INGEST__EVENTS_TOPIC": topics["raw"],
        "FS_INGEST__DLQ_TOPIC": topics["dlq"],
        "FS_INGEST__RESULTS_CONSUMER": "false",
        "FS_STREAM__APP_ID": f"bench-stream-{suffix}",
        "FS_STREAM__INPUT_TOPIC": topics["raw"],
        "FS_STREAM__ENRICHED_TOPIC": topics["enriched"],
        "FS_STREAM__SESSIONS_TOPIC": topics["sessions"],
        "FS_STREAM__DLQ_TOPIC": topics["dlq"],
        "FS_STREAM__TOOLS_TOPIC": topics["tools"],
        "FS_STREAM__INFERENCES_TOPIC": topics["inferences"],
        "FS_STREAM__DATA_DIR": str(workdir / "faust"),
        "FS_CLICKHOUSE__CHDB_PATH": str(workdir / "chdb"),
        "FS_LOADER_GROUP_ID": f"bench-loader-{suffix}",
        "FS_LOADER_EVENTS_TOPIC": topics["enriched"],
        "FS_LOADER_SESSIONS_TOPIC": topics["sessions"],
        "FS_LOADER_DLQ_TOPIC": topics["dlq"],
        "FS_LOADER_TOOLS_TOPIC": topics["tools"],
        "FS_LOADER_INFERENCES_TOPIC": topics["inferences"],
    }
    cli = [sys.executable, "-c", "from funnelstream.cli import main; main()"]
    logs = {name: open(workdir / f"{name}.log", "wb") for name in ports}  # noqa: SIM115 -- closed below
    processes = {
        "ingest": subprocess.Popen([*cli, "ingest", "serve", "--port", str(ports["ingest"])], env=env,
                                   stdout=logs["ingest"], stderr=subprocess.STDOUT),
        "stream": subprocess.Popen([*cli, "stream", "worker", "--web-port", str(ports["stream"])], env=env,
                                   stdout=logs["stream"], stderr=subprocess.STDOUT),
        "warehouse": subprocess.Popen([*cli, "warehouse", "serve", "--port", str(ports["warehouse"])], env=env,
                                      stdout=logs["warehouse"], stderr=subprocess.STDOUT),
    }  # fmt: skip
    result: dict[str, Any] = {"rate": args.rate, "duration_s": args.duration}
    api = f"http://127.0.0.1:{ports['warehouse']}"
    try:
        _wait_ready(f"http://127.0.0.1:{ports['ingest']}/readyz", 60)
        _wait_ready(f"{api}/readyz", 60)
        time.sleep(10)  # the Faust worker has no readiness probe here; let it join its group
        sent, accepted = asyncio.run(_send(f"http://127.0.0.1:{ports['ingest']}/v1/batch", args.rate,
                                           args.duration, args.batch_size))  # fmt: skip
        result.update(sent=sent, accepted=accepted)
        deadline = time.monotonic() + 120
        visible = 0
        while time.monotonic() < deadline:
            rows = httpx.post(f"{api}/v1/sql", json={"sql": "SELECT uniqExact(event_id) AS n FROM events"}).json()
            visible = int(rows["rows"][0]["n"])
            if visible >= accepted:
                break
            time.sleep(1)
        result["visible"] = visible
        if visible < accepted:
            raise TimeoutError(f"{accepted - visible} accepted events not visible after 120 s")
        lag = httpx.post(
            f"{api}/v1/sql",
            json={"sql": "SELECT quantiles(0.5, 0.9, 0.99)(dateDiff('millisecond', received_at, inserted_at)) AS q, "
                  "max(dateDiff('millisecond', received_at, inserted_at)) AS worst, "
                  "quantile(0.99)(dateDiff('millisecond', received_at, enriched_at)) AS stream_p99, "
                  "quantile(0.99)(dateDiff('millisecond', enriched_at, inserted_at)) AS loader_p99 FROM events"},
        ).json()["rows"][0]  # fmt: skip
        result.update(
            freshness_p50_ms=lag["q"][0], freshness_p90_ms=lag["q"][1], freshness_p99_ms=lag["q"][2],
            freshness_max_ms=lag["worst"], stream_stage_p99_ms=lag["stream_p99"],
            loader_stage_p99_ms=lag["loader_p99"], cores=os.cpu_count(), load_average_1m=round(os.getloadavg()[0], 2),
        )  # fmt: skip
    except Exception as exc:  # the JSON line says what failed
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            logs[name].close()
        if "error" in result:
            for name in ports:
                tail = (workdir / f"{name}.log").read_bytes()[-1500:].decode("utf-8", "replace")
                sys.stderr.write(f"--- {name} ---\n{tail}\n")
        shutil.rmtree(workdir, ignore_errors=True)
        _delete_topics(kafka, list(topics.values()))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    raise SystemExit(main())
