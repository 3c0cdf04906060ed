"""Running the warehouse loader in a test until what it inserted is enough."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def run_loader_until(loader: Any, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Set up ``loader`` and run it in a thread until ``done()`` holds or ``timeout_s`` passes; then
    stop it (it commits what it inserted) and close it. The caller asserts on what was loaded."""
    loader.setup()
    thread = threading.Thread(target=loader.run, name="test-loader")
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        loader.stop.set()
        thread.join(30)
        loader.close()
