"""An open-loop HTTP load generator for the paced phase of ``ops.bench.ingest``; prints one JSON line.

Requests are released at a fixed rate whatever the server's speed, and each latency runs from its
request's release, so a stalled server is not hidden by a waiting client (coordinated omission).
Releases happen once per millisecond tick: uvloop rounds a shorter sleep to zero, and the client
would then spin on a core the server needs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

TICK_S = 0.001
CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors = 0
        self.expected: int | None = None
        self.all_answered = asyncio.Event()

    def count(self) -> None:
        if self.expected is not None and len(self.latencies) + self.errors >= self.expected:
            self.all_answered.set()


class Connection(asyncio.Protocol):
    """One keep-alive connection with one request in flight, used in turn; a request that finds no
    free connection waits in the backlog, on the clock. A bare Protocol keeps the client's own CPU
    cost small next to the server's."""

    def __init__(
        self, request: bytes, backlog: collections.deque[float], idle: collections.deque[Connection], stats: Stats
    ) -> None:
        self.request = request
        self.backlog = backlog
        self.idle = idle
        self.stats = stats
        self.buffer = b""
        self.scheduled = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.next_or_idle()

    def send(self, scheduled: float) -> None:
        self.scheduled = scheduled
        assert self.transport is not None
        self.transport.write(self.request)

    def next_or_idle(self) -> None:
        if self.backlog:
            self.send(self.backlog.popleft())
        else:
            self.idle.append(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        match = CONTENT_LENGTH.search(self.buffer, 0, end)
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(self.buffer) < total:
            return
        self.stats.statuses[int(self.buffer[9:12])] += 1
        self.stats.latencies.append(time.perf_counter() - self.scheduled)
        self.stats.count()
        self.buffer = self.buffer[total:]
        self.next_or_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.errors += 1
        self.stats.count()
        if self in self.idle:
            self.idle.remove(self)


async def run(
    url: str, body: bytes, headers: dict[str, str], rate: float, duration_s: float, connections: int
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    backlog: collections.deque[float] = collections.deque()
    # First in, first out: every connection is used often, so none sits idle long enough for the
    # server's keep-alive timeout to close it under a request being sent.
    idle: collections.deque[Connection] = collections.deque()
    stats = Stats()
    for _ in range(connections):
        await loop.create_connection(lambda: Connection(request, backlog, idle, stats), host, port)
    started = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - started < duration_s:
        target = int((now - started) * rate)
        while sent < target:
            if idle:
                idle.popleft().send(now)
            else:
                backlog.append(now)
            sent += 1
        await asyncio.sleep(TICK_S)
    stats.expected = sent
    stats.count()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stats.all_answered.wait(), 30)
    elapsed = time.perf_counter() - started
    latencies = sorted(stats.latencies)

    def percentile(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 2) if latencies else 0.0

    ok = sum(count for status, count in stats.statuses.items() if 200 <= status < 300)
    return {
        "offered_rps": rate,
        "achieved_rps": round(ok / elapsed),
        "requests": sent,
        "ok": ok,
        "statuses": {str(k): v for k, v in stats.statuses.items()},
        "errors": stats.errors,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file with the request body")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    with open(args.body, "rb") as handle:
        body = handle.read()
    try:
        import uvloop  # noqa: PLC0415 -- optional: the faster event loop where it is installed

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, body, headers, args.rate, args.duration, args.connections))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
