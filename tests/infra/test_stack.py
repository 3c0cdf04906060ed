"""`make up` is idempotent and `make down` leaves nothing of ours running.

Runs a second, private stack on other ports and data folders, so the suite's own stack is untouched.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra.processes import ManagedProcess
from infra.stack import InfraSettings, down, status, up


@pytest.fixture
def private_stack(tmp_path: Path, infra_settings: InfraSettings):  # type: ignore[no-untyped-def]
    settings = InfraSettings(
        kafka={"bootstrap_servers": "127.0.0.1:29092", "partitions": 1},
        s3={"endpoint": "127.0.0.1:7333", "bucket": "funnelstream-private"},
        stack={
            "dir": tmp_path / "stack",
            "cache_dir": infra_settings.stack.cache_dir,
            "kafka_controller_port": 29093,
            "seaweedfs_master_port": 7334,
            "seaweedfs_volume_port": 7335,
            "seaweedfs_filer_port": 7336,
        },
    )
    yield settings
    down(None, settings)


def _pids(settings: InfraSettings) -> dict[str, int | None]:
    return {name: row["pid"] for name, row in status(settings).items() if name != "clickhouse"}  # type: ignore[misc]


@pytest.mark.integration
@pytest.mark.slow
def test_up_twice_restarts_nothing_and_down_leaves_no_process(private_stack: InfraSettings) -> None:
    assert up(None, private_stack) == {"kafka": "started", "s3": "started"}
    first = _pids(private_stack)
    assert all(first.values())

    started = time.monotonic()
    assert up(None, private_stack) == {"kafka": "running", "s3": "running"}
    assert time.monotonic() - started < 5
    assert _pids(private_stack) == first

    recorded = [
        ManagedProcess(name, private_stack.stack.dir / f"{name}.pid", Path("unused")).recorded() for name in first
    ]
    assert down(None, private_stack) == {"s3": True, "kafka": True}
    for record in recorded:
        assert record is not None
        pid = record[0]
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
        assert _live_members_of_group(pid) == []
    assert all(not row["healthy"] for name, row in status(private_stack).items() if name != "clickhouse")


def _live_members_of_group(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in {"Z", "X"}:
            members.append(int(stat.parent.name))
    return members


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
