"""Run the project's services as child processes: for the demo, load runs and failure tests.

Each service is the project CLI (``ops.cli``) in its own process, as in production, with its log
under one folder. Starting and stopping are ``infra.processes``': SIGTERM first (services drain,
flush and commit on it), SIGKILL after a grace period; ``kill`` sends SIGKILL at once, to test what a crash loses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from infra.processes import ProcessError, spawn_logged, stop_group, wait_ready


class ServiceProcessError(ProcessError):
    """A service process exited during start-up or did not answer its readiness probe in time."""

    tail_lines = 30


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
        self.process = spawn_logged([sys.executable, "-m", "ops.cli", *self.args], self.log, env=self.env)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        wait_ready(
            self.name,
            self.log,
            running=lambda: self.running,
            ready=lambda: self.ready_url is None or _answers(self.ready_url, self.ready_headers),
            timeout_s=timeout_s,
            interval_s=0.3,
            not_ready=f"not ready after {timeout_s}s at {self.ready_url}",
            error=ServiceProcessError,
        )

    def stop(self, grace_s: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            stop_group(self.process.pid, lambda: self.running, grace_s)
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
