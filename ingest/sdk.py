"""A small client for server-side senders: batching, retries with backoff and jitter.

Invariant: an event gets its ``event_id`` (and ``client_ts``) when it is tracked, so every retry
carries the same id and the pipeline's dedup collapses duplicates; ``sent_at`` is set per attempt, so
the collector's clock-skew correction holds however long the retries took.
"""

from __future__ import annotations

import gzip
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
import orjson

from funnelstream.errors import FunnelstreamError

log = logging.getLogger(__name__)

LIBRARY = {"library_name": "funnelstream-python", "library_version": "1"}
RETRIABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_BATCH_EVENTS = 500
# Under the collector's 1 MB, leaving room for the envelope of the batch.
MAX_BATCH_BYTES = 900_000


class SendError(FunnelstreamError):
    """A batch was not accepted: refused outright (``status`` 4xx) or still failing after retries."""

    def __init__(self, status: int | None, detail: str, *, attempts: int, event_ids: list[str]) -> None:
        self.status = status
        self.detail = detail
        self.attempts = attempts
        self.event_ids = event_ids
        super().__init__(
            f"batch of {len(event_ids)} events not accepted after {attempts} attempt(s): {status} {detail}"
        )


class QueueFull(FunnelstreamError):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        super().__init__(f"SDK queue holds {capacity} events already; flush or slow down")


@dataclass
class BatchResult:
    accepted: int
    rejected: list[dict[str, Any]]
    attempts: int


@dataclass
class Backoff:
    """Full jitter: a random wait up to ``base * 2**attempt``, capped, never below Retry-After."""

    base_s: float = 0.2
    max_s: float = 30.0
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        ceiling = min(self.max_s, self.base_s * (2**attempt))
        return float(max(ceiling * self.rand(), retry_after_s or 0.0))


@dataclass
class Client:
    base_url: str
    write_key: str
    batch_size: int = MAX_BATCH_EVENTS
    flush_interval_s: float = 1.0
    max_queue: int = 100_000
    max_retries: int = 8
    timeout_s: float = 10.0
    compress: bool = True
    backoff: Backoff = field(default_factory=Backoff)
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    on_error: Callable[[SendError], None] | None = None
    on_rejected: Callable[[list[dict[str, Any]]], None] | None = None

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout_s, transport=self.transport)
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(self.max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed_events = 0

    # --- the background sender --------------------------------------------------------------------

    def track(self, event: dict[str, Any]) -> str:
        """Queue one event; returns its event_id. Raises :class:`QueueFull` rather than block."""
        stamped = dict(event)
        stamped.setdefault("event_id", str(uuid.uuid4()))
        stamped.setdefault("client_ts", datetime.now(UTC).isoformat())
        stamped["context"] = {**LIBRARY, **(stamped.get("context") or {})}
        try:
            self._queue.put_nowait(stamped)
        except queue.Full:
            raise QueueFull(self.max_queue) from None
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="funnelstream-sdk", daemon=True)
            self._thread.start()
        return str(stamped["event_id"])

    def _drain(self, wait_s: float) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait_s
        while len(events) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                events.append(
                    self._queue.get(timeout=max(remaining, 0.0)) if remaining > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return events

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            events = self._drain(0.0 if self._stop.is_set() else self.flush_interval_s)
            if events:
                self._send_quietly(events)
                for _ in events:
                    self._queue.task_done()

    def _send_quietly(self, events: list[dict[str, Any]]) -> None:
        for chunk in split_batches(events, self.batch_size):
            try:
                result = self.send_batch(chunk)
            except SendError as exc:
                self.failed_events += len(exc.event_ids)
                log.error("events not delivered", extra={"events": len(exc.event_ids), "reason": str(exc)})
                if self.on_error is not None:
                    self.on_error(exc)
                continue
            if result.rejected:
                log.warning("events rejected by the collector", extra={"rejected": result.rejected})
                if self.on_rejected is not None:
                    self.on_rejected(result.rejected)

    def flush(self) -> None:
        """Block until every tracked event is sent, refused, or given up on."""
        self._queue.join()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --- one batch, with retries ------------------------------------------------------------------

    def send_batch(self, events: list[dict[str, Any]]) -> BatchResult:
        """POST one batch now, retrying transient failures; the events keep their ids throughout."""
        event_ids = [str(event.get("event_id")) for event in events]
        status: int | None = None
        detail = ""
        for attempt in range(self.max_retries + 1):
            body = orjson.dumps({"batch": events, "sent_at": datetime.now(UTC).isoformat()})
            headers = {"Content-Type": "application/json", "X-Write-Key": self.write_key}
            if self.compress:
                body = gzip.compress(body, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
            retry_after_s: float | None = None
            try:
                response = self._http.post("/v1/batch", content=body, headers=headers)
            except httpx.TransportError as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 202:
                    answer = response.json()
                    return BatchResult(answer["accepted"], answer["rejected"], attempt + 1)
                detail = response.text[:500]
                if status not in RETRIABLE_STATUSES:
                    raise SendError(status, detail, attempts=attempt + 1, event_ids=event_ids)
                retry_after_s = _retry_after(response.headers.get("retry-after"))
            if attempt < self.max_retries:
                self.sleep(self.backoff.delay(attempt, retry_after_s))
        raise SendError(status, detail, attempts=self.max_retries + 1, event_ids=event_ids)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def split_batches(events: list[dict[str, Any]], max_events: int = MAX_BATCH_EVENTS) -> list[list[dict[str, Any]]]:
    """Batches within the collector's limits on events and bytes."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        event_size = len(orjson.dumps(event)) + 1
        if current and (len(current) >= max_events or size + event_size > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(event)
        size += event_size
    if current:
        batches.append(current)
    return batches
