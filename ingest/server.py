"""How the collector's process serves: uvicorn's httptools protocol under the connection limits of
:mod:`funnelstream.serving`, each response sent to the socket in one write, and glibc's allocator
told to keep what it frees.

Invariant: the writes made while handling one event of the loop (a response's head and body) are
joined and sent before the loop polls the sockets again: one system call, no added wait.
"""

from __future__ import annotations

import asyncio
import ctypes
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
