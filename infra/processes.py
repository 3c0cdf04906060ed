"""Child processes that write to a log file: start one in a session of its own, wait until it is ready, stop it.

Owns what the local stack (``infra.stack``) and the ops process manager (``ops.processes``) share:
starting with output appended to a log, the readiness wait, stopping (SIGTERM to the group, SIGKILL
after a grace period), the error that ends with the log's last lines, and processes remembered by a
pid file. Invariant: a process started here leads its own process group, so stopping it stops its children.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from funnelstream.errors import FunnelstreamError


def log_tail(log: Path | None, lines: int) -> str:
    """The last ``lines`` of ``log`` under a header, or nothing when there is no log yet."""
    if log is None or not log.exists():
        return ""
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return f"\n--- last lines of {log} ---\n{tail}"


class ProcessError(FunnelstreamError, RuntimeError):
    """A child process could not be prepared, started or made ready; the message ends with its log's tail."""

    tail_lines: ClassVar[int] = 20

    def __init__(self, name: str, detail: str, log: Path | None = None) -> None:
        self.name = name
        self.detail = detail
        self.log = log
        super().__init__(f"{name}: {detail}{log_tail(log, self.tail_lines)}")


def spawn_logged(
    argv: list[str], log_file: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, stdout and stderr appended to ``log_file``, on top of this environment."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def wait_ready(
    name: str,
    log: Path,
    *,
    running: Callable[[], bool],
    ready: Callable[[], bool],
    timeout_s: float,
    interval_s: float,
    not_ready: str,
    error: type[ProcessError] = ProcessError,
) -> None:
    """Return once ``ready()``; raise ``error`` when the process exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not running():
            raise error(name, "exited during start-up", log)
        if ready():
            return
        time.sleep(interval_s)
    raise error(name, not_ready, log)


def stop_group(pid: int, alive: Callable[[], bool], grace_s: float) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it if still ``alive`` after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and alive():
        time.sleep(0.05)
    if alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while alive():
            time.sleep(0.05)


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (None when it is gone or a zombie): with the pid, it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X"}:
        _reap(pid)
        return None
    return fields[19]


def _reap(pid: int) -> None:
    """Collect a finished child so it does not linger as a zombie of the calling process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class ManagedProcess:
    """A process that outlives the command that started it, known by pid and start time (a reused pid is not ours)."""

    name: str
    pid_file: Path
    log_file: Path

    def recorded(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self.pid_file.read_text())
            return int(data["pid"]), str(data["start_time"])
        except (OSError, ValueError, KeyError):
            return None

    def running_pid(self) -> int | None:
        record = self.recorded()
        if record is None:
            return None
        pid, start_time = record
        return pid if process_start_time(pid) == start_time else None

    def start(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
        proc = spawn_logged(argv, self.log_file, cwd=cwd, env=env)
        start_time = None
        for _ in range(50):
            start_time = process_start_time(proc.pid)
            if start_time:
                break
            time.sleep(0.01)
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "start_time": start_time, "argv": argv}))
        return proc.pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        pid = self.running_pid()
        if pid is not None:
            stop_group(pid, lambda: self.running_pid() is not None, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None
