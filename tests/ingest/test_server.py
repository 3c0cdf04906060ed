from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from ingest.server import CoalescingHttpToolsProtocol, CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_loop_turn_leave_in_one_call_and_close_sends_them_first() -> None:
    asyncio.run(_writes_of_one_loop_turn())


async def _writes_of_one_loop_turn() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
    transport.write(b'{"accepted":1}')
    assert inner.writes == []
    await asyncio.sleep(0)
    assert inner.writes == [b'HTTP/1.1 202 Accepted\r\n\r\n{"accepted":1}']
    transport.write(b"last")
    transport.close()
    assert inner.writes[-1] == b"last" and inner.closed
    assert transport.get_extra_info("peername") == "info:peername"


@pytest.mark.integration  # a real server on loopback
def test_a_server_with_the_protocol_answers_keep_alive_and_closing_requests() -> None:
    asyncio.run(_serve_and_ask())


async def _serve_and_ask() -> None:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hello")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=CoalescingHttpToolsProtocol, log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answers = [await client.get("/hello") for _ in range(3)]
            closing = await client.get("/hello", headers={"Connection": "close"})
        assert [a.text for a in answers] == ["hello"] * 3 and closing.text == "hello"
    finally:
        server.should_exit = True
        await serving
