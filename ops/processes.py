"""Run the project's services as child processes: for the demo, load runs and failure tests.

Each service is the ``funnelstream`` CLI in its own process, as in production, with its log under
one folder. Stopping sends SIGTERM first (services drain, flush and commit on it) and SIGKILL only
after a grace period; ``kill`` sends SIGKILL at once, to test what a crash loses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class ServiceProcessError(RuntimeError):
    def __init__(self, name: str, detail: str, log: Path) -> None:
        self.name = name
        self.log = log
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
        super().__init__(f"{name}: {detail}\n--- last lines of {log} ---\n{tail}")


@dataclass
class ServiceProcess:
    name: str
    args: list[str]
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    ready_headers: dict[str, str] = field(default_factory=dict)
    """Sent with the readiness probe: the warehouse's /readyz needs its read key."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "ops.cli", *self.args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise ServiceProcessError(self.name, "exited during start-up", self.log)
            if self.ready_url is None or _answers(self.ready_url, self.ready_headers):
                return
            time.sleep(0.3)
        raise ServiceProcessError(self.name, f"not ready after {timeout_s}s at {self.ready_url}", self.log)

    def stop(self, grace_s: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, with no chance to flush or commit."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=2).is_success
    except httpx.HTTPError:
        return False
