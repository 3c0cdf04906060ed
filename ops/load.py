"""``funnelstream load``: realistic traffic through the collector, then how fresh and how complete it is.

The simulator's journeys are offered open loop at a fixed rate in batches; a sender retries a batch
on 503, 429 and connection errors with the same ``event_id``s until it gets a 202. Then, through the
warehouse's SQL API: freshness is the time from each 202 to ``inserted_at``; complete means every
event that got a 202 is there exactly once (after FINAL) and every malformed one is in ``dlq_events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from clickhouse.client import ApiReader, WarehouseReader
from clickhouse.errors import WarehouseError, WarehouseUnavailable
from ingest.settings import DEV_WRITE_KEY
from ops.journeys import collector_payloads, journeys, live_spec

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class LoadOptions:
    rate: float = 1000.0
    """Events per second offered, whatever the answers take (open loop)."""
    duration_s: float = 30.0
    batch_size: int = 100
    malformed_share: float = 0.0
    """Share of events broken on purpose (a missing field, a wrong type, an unknown type, ...)."""
    ingest_url: str = "http://127.0.0.1:8000"
    write_key: str = DEV_WRITE_KEY
    max_in_flight: int = 512
    """Batches sent or waiting for a retry at once; past it the generator waits (and says so)."""
    give_up_s: float = 600.0
    """A batch without a 202 after this long is reported as not accepted."""
    request_timeout_s: float = 30.0
    seed: int | None = None


# --- events ----------------------------------------------------------------------------------------


def _arm(anonymous_id: str, user_id: str | None) -> str:
    return ("control", "treatment")[zlib.crc32((user_id or anonymous_id).encode()) & 1]


def _break_event(event: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """A copy of ``event`` the contract refuses, and which field makes it so; the event_id stays valid."""
    broken = dict(event)
    kind = rng.choice(["missing", "type", "unknown_type", "timestamp"])
    if kind == "missing":
        field_name = "input_id" if "input_id" in broken else "anonymous_id"
        del broken[field_name]
    elif kind == "type":
        field_name = "width" if "width" in broken else "tool_id" if "tool_id" in broken else "anonymous_id"
        broken[field_name] = {"not": "a scalar"}
    elif kind == "unknown_type":
        field_name = "event_type"
        broken[field_name] = "image_teleported"
    else:
        field_name = "client_ts"
        broken[field_name] = "last tuesday"
    return broken, field_name


POOL_EVENTS = 100_000
"""Events drawn before batches start reusing the pool's journeys under fresh identities."""


class EventFactory:
    """Endless journeys of a run; every device id starts with ``prefix`` so the run can be found again.

    Drawing journeys costs tens of microseconds an event, more than the pipeline's own work on one: a
    load run's generator would measure itself. So the journeys drawn are kept, in draw order, as a
    pool; once it holds ``pool_events`` events, batches walk it again and again, each cycle under new
    identities: a fresh ``event_id`` per event, and device and user ids marked with the cycle
    (``anon-<seed>-c<cycle>-...``, still under ``prefix``). Every event of a run is distinct, and a
    device's events are one journey, in order. A run shorter than the pool sends exactly the events
    the seed draws. ``prefill`` draws ahead of a timed run.
    """

    def __init__(self, seed: int, malformed_share: float = 0.0, pool_events: int = POOL_EVENTS) -> None:
        self.seed = seed
        self.prefix = f"anon-{seed}-"
        self.malformed_share = malformed_share
        self.pool_events = pool_events
        self._rng = random.Random(seed)
        self._draws = itertools.count()
        self._pool: list[dict[str, Any]] = []
        """Events as drawn, never sent themselves: batches send copies."""
        self._position = 0
        self._cycle = 0
        self._cycle_prefix = self.prefix
        self._id_head, self._id_counter = _event_id_source(seed)
        self.malformed: dict[str, str] = {}
        """event_id → the field broken on purpose."""

    @property
    def pooled(self) -> int:
        """Events drawn so far (the pool's size)."""
        return len(self._pool)

    def prefill(self, events: int) -> None:
        """Draw until the pool holds ``events`` (at least), so batches that follow draw nothing."""
        while len(self._pool) < events:
            self._draw()

    def batch(self, size: int) -> list[dict[str, Any]]:
        # Stamped now: a live load, not a backfill, so nothing is late or out of the skew bounds.
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        events: list[dict[str, Any]] = []
        while len(events) < size:
            if self._position == len(self._pool):
                if not self._pool or len(self._pool) < self.pool_events:
                    self._draw()
                else:
                    self._next_cycle()
                continue
            templates = self._pool[self._position : self._position + size - len(events)]
            self._position += len(templates)
            if self._cycle == 0:
                events += [{**template, "client_ts": now} for template in templates]
            else:
                events += [self._renamed(template, now) for template in templates]
        if self.malformed_share:
            for index, event in enumerate(events):
                if self._rng.random() < self.malformed_share:
                    broken, field_name = _break_event(event, self._rng)
                    self.malformed[broken["event_id"]] = field_name
                    events[index] = broken
        return events

    def _draw(self) -> None:
        draw = next(self._draws)
        spec = live_spec(2000, self.seed, end=datetime.now(UTC), window=timedelta(hours=2))
        spec = replace(spec, id_prefix=f"{self.prefix}{draw}-")
        self._pool += _shared(collector_payloads(journeys(spec, self.seed * 1_000_003 + draw, assign=_arm)))

    def _next_cycle(self) -> None:
        self._cycle += 1
        self._position = 0
        # Not a digit after the prefix, so no marked id equals one as drawn ("anon-<seed>-<draw>-...").
        self._cycle_prefix = f"{self.prefix}c{self._cycle}-"

    def _renamed(self, template: dict[str, Any], now: str) -> dict[str, Any]:
        cut = len(self.prefix)
        event = {
            **template,
            "event_id": f"{self._id_head}{next(self._id_counter):012x}",
            "anonymous_id": self._cycle_prefix + template["anonymous_id"][cut:],
            "client_ts": now,
        }
        user_id = template.get("user_id")
        if user_id is not None:
            event["user_id"] = self._cycle_prefix + user_id[cut:]
        return event


def _shared(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` with equal nested dicts and repeated strings as one object each: a pool of a million
    events is a third smaller. Nothing changes a sent event's nested dicts (copies are shallow)."""
    nested: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
    for event in events:
        for key in ("experiments", "context"):
            value = event[key]
            event[key] = nested.setdefault(tuple(value.items()), value)
        event["event_type"] = sys.intern(event["event_type"])
        event["client_ts"] = ""  # stamped on every copy sent
    return events


def _event_id_source(seed: int) -> tuple[str, Iterator[int]]:
    """The first 24 characters of a version 4 UUID drawn from ``seed``, and a counter for its last 48 bits.

    A counter formatted into the tail costs a fraction of ``uuid4()``; version 4 keeps these apart from
    the drawn events' ids (version 5), and 74 drawn bits keep one run's apart from another's.
    """
    bits = random.Random(f"event-ids-{seed}").getrandbits(128)
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    return str(uuid.UUID(int=bits))[:24], itertools.count()


# --- sending ---------------------------------------------------------------------------------------


@dataclass
class SendLog:
    """What the collector answered, per event."""

    accepted_at_ms: dict[str, float] = field(default_factory=dict)
    """event_id → wall-clock time of the 202 that covered it."""
    rejected: dict[str, str] = field(default_factory=dict)
    """event_id → the field the collector named when refusing it."""
    not_accepted: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    request_latency_ms: list[float] = field(default_factory=list)
    sent_events: int = 0
    waited_for_slots_s: float = 0.0
    sending_s: float = 0.0


async def _send_batch(
    client: httpx.AsyncClient, options: LoadOptions, batch: list[dict[str, Any]], log: SendLog
) -> None:
    deadline = time.monotonic() + options.give_up_s
    attempt = 0
    while True:
        sent_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        body = orjson.dumps({"batch": [{**event, "sent_at": sent_at} for event in batch]})
        started = time.perf_counter()
        retry_after: float | None = None
        try:
            response = await client.post(
                "/v1/batch",
                content=body,
                headers={"X-Write-Key": options.write_key, "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            log.statuses[type(exc).__name__] += 1
        else:
            log.request_latency_ms.append((time.perf_counter() - started) * 1000)
            log.statuses[str(response.status_code)] += 1
            if response.status_code == 202:
                accepted_at = time.time() * 1000
                answer = response.json()
                refused = {item["index"]: item for item in answer.get("rejected", [])}
                for index, event in enumerate(batch):
                    if index in refused:
                        errors = refused[index].get("errors") or [{}]
                        log.rejected[str(event["event_id"])] = str(errors[0].get("field", "?"))
                    else:
                        log.accepted_at_ms[str(event["event_id"])] = accepted_at
                return
            if response.status_code not in RETRYABLE_STATUS:
                # A refusal of the whole request is not something a retry fixes.
                log.not_accepted.update(str(event["event_id"]) for event in batch)
                return
            header = response.headers.get("Retry-After")
            retry_after = float(header) if header and header.replace(".", "", 1).isdigit() else None
        attempt += 1
        backoff = min(5.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0)
        delay = max(retry_after or 0.0, backoff)
        if time.monotonic() + delay > deadline:
            log.not_accepted.update(str(event["event_id"]) for event in batch)
            return
        log.retries += 1
        await asyncio.sleep(delay)


def _finished(slots: asyncio.Semaphore, tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def release(done: asyncio.Task[None]) -> None:
        slots.release()
        tasks.discard(done)

    return release


async def drive(options: LoadOptions, factory: EventFactory, stop: threading.Event | None = None) -> SendLog:
    """Offer ``rate`` events/s for ``duration_s`` (or until ``stop``), then wait for every batch's fate."""
    log = SendLog()
    interval = options.batch_size / options.rate
    slots = asyncio.Semaphore(options.max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    # Idle connections are dropped before the collector's own 5 s keep-alive ends, so a batch is
    # never written to a connection the server is closing.
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
    async with httpx.AsyncClient(
        base_url=options.ingest_url, timeout=options.request_timeout_s, limits=limits
    ) as client:
        started = time.monotonic()
        index = 0
        while time.monotonic() - started < options.duration_s and not (stop and stop.is_set()):
            batch = factory.batch(options.batch_size)
            waited = time.monotonic()
            await slots.acquire()
            log.waited_for_slots_s += time.monotonic() - waited
            task = asyncio.create_task(_send_batch(client, options, batch, log))
            task.add_done_callback(_finished(slots, tasks))
            tasks.add(task)
            log.sent_events += len(batch)
            index += 1
            await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
        log.sending_s = time.monotonic() - started
        if tasks:
            await asyncio.gather(*tasks)
    return log


# --- checking --------------------------------------------------------------------------------------


def wait_until_visible(warehouse: WarehouseReader, prefix: str, expected: int, timeout_s: float) -> tuple[int, float]:
    """Poll until ``expected`` distinct events of the run are in ``events``; returns (visible, seconds waited)."""
    started = time.monotonic()
    visible = 0
    while True:
        try:
            visible = int(
                warehouse.query_rows(
                    "SELECT uniqExact(event_id) AS n FROM events WHERE startsWith(anonymous_id, {prefix:String})",
                    {"prefix": prefix},
                )[0]["n"]
            )
        except (WarehouseUnavailable, WarehouseError):
            visible = 0  # the warehouse may be restarting; keep asking until the deadline
        waited = time.monotonic() - started
        if visible >= expected or waited > timeout_s:
            return visible, waited
        time.sleep(1.0)


def dead_letters(warehouse: WarehouseReader, event_ids: list[str]) -> dict[str, str]:
    """The reason stored in ``dlq_events`` for each of ``event_ids`` that is there."""
    found: dict[str, str] = {}
    for start in range(0, len(event_ids), 2000):
        for row in warehouse.query_rows(
            "SELECT event_id, any(reason) AS reason FROM dlq_events FINAL "
            "WHERE event_id IN {ids:Array(String)} GROUP BY event_id",
            {"ids": event_ids[start : start + 2000]},
        ):
            found[row["event_id"]] = row["reason"]
    return found


def wait_for_dead_letters(warehouse: WarehouseReader, event_ids: list[str], timeout_s: float) -> dict[str, str]:
    """Poll until every one of ``event_ids`` is in ``dlq_events``, or the deadline; returns what is there.

    Dead letters reach the warehouse on their own topic, which the loader reads apart from
    ``events.enriched``: after a fault one may still be on its way when every event is visible.
    """
    deadline = time.monotonic() + timeout_s
    wanted = set(event_ids)
    found: dict[str, str] = {}
    while True:
        # The warehouse may be restarting; keep asking until the deadline.
        with contextlib.suppress(WarehouseUnavailable, WarehouseError):
            found = dead_letters(warehouse, event_ids)
        if wanted <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def _percentile(sorted_values: list[float], share: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, math.ceil(share * len(sorted_values)) - 1)
    return round(sorted_values[rank], 1)


@dataclass
class Verdict:
    """Did every accepted event arrive exactly once, and every malformed one reach the DLQ."""

    accepted: int
    visible: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    rows_final: int
    rows_raw: int
    malformed_sent: int
    malformed_in_dlq: int
    malformed_missing: list[str]
    malformed_without_reason: list[str]
    freshness_ms: dict[str, float | None]

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.unexpected or self.malformed_missing or self.malformed_without_reason
        )

    def figures(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "visible": self.visible,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexpected": len(self.unexpected),
            "rows_final": self.rows_final,
            "rows_raw": self.rows_raw,
            "malformed_sent": self.malformed_sent,
            "malformed_in_dlq": self.malformed_in_dlq,
            **{f"freshness_{name}_ms": value for name, value in self.freshness_ms.items()},
        }


def _run_rows(warehouse: WarehouseReader, prefix: str, expected: int) -> list[dict[str, Any]]:
    """(event_id, copies after FINAL, copies before, first enriched_at and inserted_at) for every event of
    the run, paged."""
    pages = max(1, math.ceil(expected / 50_000))
    page_filter = "startsWith(anonymous_id, {prefix:String}) AND cityHash64(event_id) % {pages:UInt32} = {page:UInt32}"
    rows: list[dict[str, Any]] = []
    for page in range(pages):
        rows += warehouse.query_rows(
            "SELECT toString(event_id) AS event_id, sum(final_copy) AS final_copies, count() AS raw_copies, "
            "toUnixTimestamp64Milli(min(enriched_at)) AS enriched_ms, "
            "toUnixTimestamp64Milli(min(inserted_at)) AS inserted_ms FROM ("
            f"  SELECT event_id, enriched_at, inserted_at, 0 AS final_copy FROM events WHERE {page_filter}"
            "  UNION ALL"
            f"  SELECT event_id, enriched_at, inserted_at, 1 AS final_copy FROM events FINAL WHERE {page_filter}"
            ") GROUP BY event_id",
            {"prefix": prefix, "pages": pages, "page": page},
        )
    return rows


def verify(warehouse: WarehouseReader, factory: EventFactory, log: SendLog, timeout_s: float = 180.0) -> Verdict:
    accepted = log.accepted_at_ms
    visible, _ = wait_until_visible(warehouse, factory.prefix, len(accepted), timeout_s)
    rows = _run_rows(warehouse, factory.prefix, max(visible, len(accepted)))
    # Every copy before FINAL counts once in raw_copies, and once more in final_copies if FINAL kept it.
    raw_rows = sum(int(row["raw_copies"]) - int(row["final_copies"]) for row in rows)
    in_warehouse = {row["event_id"]: row for row in rows}
    sent_ids = set(accepted) | set(log.rejected) | log.not_accepted
    arrived = [
        (accepted_ms, in_warehouse[event_id]) for event_id, accepted_ms in accepted.items() if event_id in in_warehouse
    ]
    lags = sorted(max(0.0, float(row["inserted_ms"]) - accepted_ms) for accepted_ms, row in arrived)
    # Where the time goes: from the 202 to the stream processor's output, and from there to the insert.
    stream_lags = sorted(max(0.0, float(row["enriched_ms"]) - accepted_ms) for accepted_ms, row in arrived)
    loader_lags = sorted(max(0.0, float(row["inserted_ms"]) - float(row["enriched_ms"])) for _, row in arrived)
    malformed = factory.malformed
    dlq = wait_for_dead_letters(warehouse, list(malformed), timeout_s)
    return Verdict(
        accepted=len(accepted),
        visible=visible,
        lost=sorted(set(accepted) - set(in_warehouse)),
        duplicated=sorted(event_id for event_id, row in in_warehouse.items() if int(row["final_copies"]) > 1),
        unexpected=sorted(set(in_warehouse) - sent_ids),
        rows_final=sum(int(row["final_copies"]) for row in rows),
        rows_raw=raw_rows,
        malformed_sent=len(malformed),
        malformed_in_dlq=len(dlq),
        malformed_missing=sorted(set(malformed) - set(dlq)),
        malformed_without_reason=sorted(event_id for event_id, reason in dlq.items() if not reason.strip()),
        freshness_ms={
            "p50": _percentile(lags, 0.50),
            "p95": _percentile(lags, 0.95),
            "p99": _percentile(lags, 0.99),
            "max": round(lags[-1], 1) if lags else None,
            "stream_stage_p99": _percentile(stream_lags, 0.99),
            "loader_stage_p99": _percentile(loader_lags, 0.99),
        },
    )


def send_figures(options: LoadOptions, log: SendLog) -> dict[str, Any]:
    latencies = sorted(log.request_latency_ms)
    return {
        "rate": options.rate,
        "duration_s": round(log.sending_s, 1),
        "sent": log.sent_events,
        "accepted": len(log.accepted_at_ms),
        "rejected_as_invalid": len(log.rejected),
        "not_accepted": len(log.not_accepted),
        "accepted_per_s": round(len(log.accepted_at_ms) / log.sending_s, 1) if log.sending_s else 0.0,
        "retries": log.retries,
        "answers": dict(log.statuses),
        "request_p50_ms": _percentile(latencies, 0.50),
        "request_p99_ms": _percentile(latencies, 0.99),
        "generator_waited_s": round(log.waited_for_slots_s, 1),
    }


def run_load(options: LoadOptions, warehouse_url: str, read_key: str, timeout_s: float = 180.0) -> dict[str, Any]:
    """Drive the collector, then check the warehouse (with its read key); the figures of one run, as a dict."""
    seed = options.seed if options.seed is not None else random.randrange(10**8, 10**9)
    factory = EventFactory(seed, options.malformed_share)
    log = asyncio.run(drive(options, factory))
    warehouse = ApiReader(warehouse_url, read_key)
    try:
        verdict = verify(warehouse, factory, log, timeout_s)
    finally:
        warehouse.close()
    return {"run": factory.prefix.rstrip("-"), **send_figures(options, log), **verdict.figures(), "ok": verdict.ok}
