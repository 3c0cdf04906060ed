"""Data for the workspace's browser tests: journeys with a planted drop-off driver, sent through the
real collector with the dev write key, and the warehouse polled (``POST /v1/sql``) until they are in.

The planted driver: images edited with the brush save half as often as the others, so at the save
step the brush is the property whose odds ratio is furthest from 1.
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from clickhouse.settings import read_key_headers
from ingest.settings import DEV_WRITE_KEY
from ops.heartbeat import make_heartbeat
from ops.journeys import JourneySpec, collector_payloads, journeys

PLANTED_TOOL_ID = 2
PLANTED_TOOL = "brush"
PLANTED_SAVE_FACTOR = 0.5
BATCH = 250


def arm(anonymous_id: str, user_id: str | None) -> str:
    return ("control", "treatment")[zlib.crc32((user_id or anonymous_id).encode()) & 1]


def planted_spec(prefix: str, now: datetime, devices: int = 700) -> JourneySpec:
    """Devices first exposed over the hour that ended 90 minutes ago, with brush saves halved: a live
    view (the last hour) starts empty, so what it shows was sent after it opened.

    Both arms edit with every tool at one save rate but for the brush's, so nothing else moves
    saves; treatment is 30 % faster (the experiment pages have an effect to show). No activity
    before exposure (it would be saved with no tool).
    """
    return JourneySpec(
        units=devices,
        id_prefix=prefix,
        start=now - timedelta(minutes=150),
        exposure_window_s=3600.0,
        images_per_unit_extra=1.0,
        image_gap_s=60.0,
        tool_rate=0.95,
        inference_rate=0.95,
        image_save_rate=0.6,
        median_task_s=60.0,
        task_time_factor=0.7,
        control_tools=(1, 2, 3),
        treatment_tools=(1, 2, 3),
        pre_exposure_share=0.0,
        tool_save_factors=((PLANTED_TOOL_ID, PLANTED_SAVE_FACTOR),),
    )


def planted_events(prefix: str, now: datetime, seed: int = 20, devices: int = 700) -> list[dict[str, Any]]:
    """The planted journeys as a tracker posts them, in time order."""
    return collector_payloads(journeys(planted_spec(prefix, now, devices), seed, assign=arm))


def upload_now(anonymous_id: str, input_id: str, event_id: str) -> dict[str, Any]:
    """One ``image_uploaded`` stamped now: what a live view must pick up."""
    return {
        "event_id": event_id,
        "event_type": "image_uploaded",
        "anonymous_id": anonymous_id,
        "input_id": input_id,
        "client_ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "experiments": {},
        "context": {"library_name": "funnelstream-tests", "library_version": "1"},
        "input_url": f"inputs/{input_id}.png",
        "width": 1024,
        "height": 768,
        "size_bytes": 200_000,
        "content_type": "image/png",
    }


def heartbeat_now() -> dict[str, Any]:
    """A pipeline heartbeat as a client posts it (the collector stamps the rest): "data as of" needs one."""
    heartbeat = make_heartbeat("workspace-tests")
    return heartbeat.model_dump(
        mode="json", exclude_none=True, exclude={"received_at", "event_ts", "timestamp_flag", "source"}
    )


@contextmanager
def heartbeats(ingest_url: str, interval_s: float = 5.0) -> Iterator[None]:
    """A heartbeat through the collector every ``interval_s`` while in the block, as the pipeline's
    emitter would send them: pages read "data as of" from the newest, and it must not look behind."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                send(ingest_url, [heartbeat_now()])
            stop.wait(interval_s)

    thread = threading.Thread(target=beat, name="workspace-heartbeats", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def send(ingest_url: str, events: Iterable[dict[str, Any]], timeout_s: float = 60.0) -> int:
    """POST the events to the collector in order, a batch at a time (retrying 429/503); returns accepted."""
    pending = list(events)
    accepted = 0
    with httpx.Client(base_url=ingest_url, headers={"X-Write-Key": DEV_WRITE_KEY}, timeout=30) as client:
        for start in range(0, len(pending), BATCH):
            deadline = time.monotonic() + timeout_s
            while True:
                sent_at = datetime.now(UTC).isoformat(timespec="milliseconds")
                batch = [{**event, "sent_at": sent_at} for event in pending[start : start + BATCH]]
                response = client.post("/v1/batch", json={"batch": batch})
                if response.status_code in (429, 503) and time.monotonic() < deadline:
                    time.sleep(float(response.headers.get("Retry-After", 1)))
                    continue
                response.raise_for_status()
                body = response.json()
                assert not body["rejected"], body["rejected"][:3]
                accepted += int(body["accepted"])
                break
    return accepted


def busy_retried(request: Callable[[], httpx.Response], tries: int = 20) -> httpx.Response:
    """``request``'s answer, asked again while the warehouse runs as many analyst queries as it allows (429)."""
    for _ in range(tries - 1):
        response = request()
        if response.status_code != 429:
            break
        time.sleep(float(response.headers.get("Retry-After", 1)))
    else:
        response = request()
    response.raise_for_status()
    return response


def sql(warehouse_url: str, read_key: str, statement: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    response = busy_retried(
        lambda: httpx.post(
            f"{warehouse_url}/v1/sql",
            json={"sql": statement, "parameters": parameters},
            headers=read_key_headers(read_key),
            timeout=30,
        )
    )
    return list(response.json()["rows"])


def wait_rows(
    warehouse_url: str,
    read_key: str,
    statement: str,
    parameters: dict[str, Any],
    done: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 90.0,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = sql(warehouse_url, read_key, statement, parameters)
        if done(rows):
            return rows
        time.sleep(1)
    raise AssertionError(f"timed out waiting; last rows {rows}")


def wait_events(warehouse_url: str, read_key: str, prefix: str, expected: int, timeout_s: float = 120.0) -> None:
    """Until every one of the run's ``expected`` events is in ``events`` (after FINAL)."""
    wait_rows(
        warehouse_url,
        read_key,
        "SELECT count() AS n FROM events FINAL WHERE startsWith(anonymous_id, {prefix:String})",
        {"prefix": prefix},
        lambda rows: bool(rows) and int(rows[0]["n"]) >= expected,
        timeout_s,
    )
