"""How the collector's process serves: uvicorn's httptools protocol with each response sent to the
socket in one write, limits on what a connection may send and how slowly, and glibc's allocator
told to keep what it frees.

uvicorn writes a response's status line and headers, then its body, as two ``transport.write``
calls, and uvloop turns each into a ``send`` system call at once. For the collector's small
answers those two system calls were the largest single cost of a request (about a quarter of the
worker's time serving single events). Here the writes made while handling one event of the loop
are joined and sent when that handling is done: one system call, one TCP segment, and no added
wait (the flush runs before the loop polls the sockets again).
"""

from __future__ import annotations

import asyncio
import ctypes
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class CoalescingTransport:
    """Holds what is written during one turn of the event loop and sends it in one call; every
    other attribute is the wrapped transport's."""

    __slots__ = ("_flush_scheduled", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._flush_scheduled = False

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        # A response with "Connection: close" is written, then the transport closed at once.
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection may send, and how slowly (``FS_INGEST__HEADER_TIMEOUT_S`` ...)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 16_384
    max_header_count: int = 64


class _Refused(Exception):
    """Stops the parser inside a callback once the connection has been answered and closed."""


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """The collector's protocol with limits uvicorn's httptools protocol does not have.

    - A request's line and headers must arrive within ``header_timeout_s`` of its first byte (of
      the connection being opened, for the first one), its body within ``body_timeout_s`` after
      them: else 408 and the connection is closed. Without this a sender of one byte a second
      held a connection (and its buffers) for as long as it liked.
    - At most ``max_header_bytes`` of request line and headers and ``max_header_count`` headers:
      else 431 and closed. Counted as bytes arrive too, so a header that never ends is cut when
      it passes the limit instead of being buffered whole by the parser.
    ``limits`` is set on a subclass made by :func:`guarded_protocol`.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._head_received = 0
        self._head_count = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_received += len(data)
        super().data_received(data)
        # Bytes of a head still incomplete: the parser would keep them all until it ends.
        if self._in_head and not self._refused and self._head_received > self.limits.max_header_bytes:
            self._refuse(431, "request headers too large")

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._head_count = 0
        self._arm(self.limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._head_count += 1
        if self._head_count > self.limits.max_header_count:
            self._refuse(431, "too many request headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "request headers too large")
            raise _Refused
        self._in_head = False
        self._head_received = 0
        self._arm(self.limits.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        super().on_message_complete()

    def _arm(self, timeout_s: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(408, "request headers not received in time")
        elif self.cycle is not None and not self.cycle.response_started:
            # The handler waiting for the body sees a disconnect; what it answers is dropped.
            self._refuse(408, "request body not received in time")
        else:
            self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        self._refused = True
        self._disarm()
        body = reason.encode()
        self.transport.write(
            STATUS_LINE[status]
            + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + b"content-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn is given (it takes a class, not an instance)."""
    return type("CollectorHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


# mallopt(3) parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_heap() -> None:
    """Keep memory glibc would hand back to the kernel between requests.

    By default glibc trims its heap as soon as 128 KB at the top are free, and maps every block
    over 128 KB afresh: each 500-event batch (a body of a few hundred KB, then 500 serialized
    events) would then fault its pages in again, which measured as the largest single cost of
    serializing an event. Bounded: what is kept stays well inside the memory budget.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its allocator has its own policy
        return
    libc.mallopt(_M_TRIM_THRESHOLD, 32 * 1024 * 1024)
    libc.mallopt(_M_MMAP_THRESHOLD, 4 * 1024 * 1024)
