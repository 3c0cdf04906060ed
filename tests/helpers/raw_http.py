"""Raw-socket clients for the connection-limit tests of the services' HTTP servers.

A hostile client is one that an HTTP library would not let us be: one that sends a request a
byte at a time, or a head of any size. These helpers speak HTTP/1.1 on a bare socket.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from dataclasses import dataclass


def connect(url: str) -> socket.socket:
    """A TCP connection to ``http://host:port``."""
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    # A reset is a close too: a server that answers and closes while a byte of ours is still in
    # flight makes the kernel reset the connection after its answer has arrived.
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def send_slowly(sock: socket.socket, data: bytes, give_up_s: float) -> tuple[float, int, bytes]:
    """Send one byte, then listen a second for the server's answer, and again; returns the seconds
    until the server answered (and closed), the bytes sent by then, and the answer."""
    started = time.monotonic()
    sent = 0
    for byte in data:
        sock.sendall(bytes([byte]))
        sent += 1
        sock.settimeout(1.0)
        try:
            first = sock.recv(65536)
        except TimeoutError:
            if time.monotonic() - started > give_up_s:
                break
            continue
        elapsed = time.monotonic() - started
        sock.settimeout(give_up_s)
        return elapsed, sent, first + read_until_closed(sock)
    return time.monotonic() - started, sent, b""


def send_head(url: str, request: bytes) -> bytes:
    """Send a whole request at once and return the answer, read until the server closes."""
    with connect(url) as sock:
        # Closed while we were still sending: refused too, and the answer is already there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_until_closed(sock)


OVERSIZED_HEADS = {
    "100KB-of-headers": b"X-Big: " + b"a" * 100_000 + b"\r\n",
    "5000-headers": b"".join(b"X-H%d: v\r\n" % i for i in range(5_000)),
}
"""Header blocks past any sane limit, by test id: one huge header, and very many small ones."""


def answered(sock: socket.socket) -> bool:
    """Whether the server has sent something (or closed). poll, not select: a test process with
    more than 1,024 descriptors open cannot select() on the newest ones."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


@dataclass
class RawAnswer:
    status: int | None
    sent_bytes: int
    head: bytes


def stream_body(url: str, path: str, size: int, headers: dict[str, str], *, chunked: bool = False) -> RawAnswer:
    """POST ``size`` bytes as a client that keeps sending; stops once the server has answered.

    A raw socket, because an HTTP client sends the whole body before it reads an answer, and the
    point is what the server does while a large body is still arriving.
    """
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    chunk = b"[" * 65_536
    sent = 0
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            while sent < size:
                if answered(sock):
                    break
                part = chunk[: min(len(chunk), size - sent)]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                sent += len(part)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server stopped reading: its answer, if any, is waiting
        try:
            received = sock.recv(65_536)
        except (ConnectionResetError, TimeoutError):
            received = b""
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else None
    return RawAnswer(status, sent, received[:2048])
