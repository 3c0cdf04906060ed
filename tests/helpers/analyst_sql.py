"""What an analyst statement could change outside its response: tables, rows, files, requests.

``snapshot`` reads them from the real engine and disk; ``Listener`` is a TCP port that counts every
connection made to it, so a statement that reaches the network shows up even when it fails.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from clickhouse.backend import Warehouse


class Listener:
    """A local TCP listener that records each connection (and answers nothing)."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port: int = self._socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="analyst-sql-listener", daemon=True)

    def _serve(self) -> None:
        # A timeout rather than select(): a test process may hold more than 1,024 descriptors.
        self._socket.settimeout(0.05)
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close()


def snapshot(engine: Warehouse, watched: Path, listener: Listener) -> dict[str, Any]:
    """Every table and its row count, the files under ``watched``, the connections to ``listener``."""
    tables = engine.query_rows(
        "SELECT database, name, total_rows FROM system.tables "
        "WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY database, name"
    )
    return {
        "tables": [(row["database"], row["name"], row["total_rows"]) for row in tables],
        "canary": engine.query_rows("SELECT count() AS rows, sum(n) AS total FROM canary")[0],
        "files": sorted(str(path) for path in watched.rglob("*")),
        "connections": listener.connections,
    }
