"""Child processes with a log: errors in the project's tree, readiness, and stopping the whole group."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from funnelstream.errors import FunnelstreamError
from infra.processes import ManagedProcess, ProcessError, spawn_logged, stop_group, wait_ready
from infra.stack import InfraError
from ops.processes import ServiceProcessError


def test_process_errors_are_project_errors_and_still_runtime_errors(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)))
    error = InfraError("kafka", "exited during start-up", log)
    assert isinstance(error, FunnelstreamError)
    assert isinstance(error, RuntimeError)
    assert error.service == "kafka"
    assert str(error).startswith(f"kafka: exited during start-up\n--- last lines of {log} ---\nline 20\n")
    assert str(error).endswith("line 39")
    assert str(ServiceProcessError("loader", "gone", log)).split(" ---\n")[1] == "\n".join(
        f"line {i}" for i in range(10, 40)
    )
    assert str(InfraError("s3", "Go is not on PATH")) == "s3: Go is not on PATH"


def test_a_process_that_exits_during_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "crash.log"
    process = spawn_logged([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], log)
    with pytest.raises(ProcessError, match="crash: exited during start-up") as raised:
        wait_ready(
            "crash",
            log,
            running=lambda: process.poll() is None,
            ready=lambda: False,
            timeout_s=30,
            interval_s=0.05,
            not_ready="never ready",
        )
    assert "boom" in str(raised.value)


def test_stopping_kills_the_group_after_the_grace_period_when_terms_are_ignored(tmp_path: Path) -> None:
    ignores_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    process = spawn_logged([sys.executable, "-c", ignores_term], tmp_path / "stubborn.log")
    wait_ready(
        "stubborn",
        tmp_path / "stubborn.log",
        running=lambda: process.poll() is None,
        ready=lambda: "up" in (tmp_path / "stubborn.log").read_text(),
        timeout_s=30,
        interval_s=0.05,
        not_ready="not up",
    )
    started = time.monotonic()
    stop_group(process.pid, lambda: process.poll() is None, grace_s=0.5)
    assert 0.5 <= time.monotonic() - started < 10
    assert process.returncode == -9


def test_a_managed_process_is_found_again_by_its_pid_file_and_stopped(tmp_path: Path) -> None:
    managed = ManagedProcess("sleeper", tmp_path / "sleeper.pid", tmp_path / "sleeper.log")
    pid = managed.start([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path)
    again = ManagedProcess("sleeper", tmp_path / "sleeper.pid", tmp_path / "other.log")
    assert again.running_pid() == pid
    assert again.stop(timeout_s=10) is True
    assert managed.running_pid() is None
    assert not (tmp_path / "sleeper.pid").exists()
    assert again.stop() is False
