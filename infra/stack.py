"""The local stack: real Kafka and a real S3 server started natively, on loopback, idempotently.

``python -m infra up|down|status``. Data, logs and pid files live under ``FS_STACK__DIR`` (unset:
``FS_PATHS__DATA_DIR``); downloaded and built artifacts under ``FS_STACK__CACHE_DIR``
(``~/.cache/funnelstream``; the Maven and Go caches hold the sources).
``up`` starts only what is not already running and healthy; ``down`` stops only what ``up``
started, by the pid it recorded.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient
from pydantic import BaseModel, Field

from funnelstream.kafka import ensure_topics, wait_for_broker
from funnelstream.objectstore import ensure_bucket, make_client
from funnelstream.settings import ServiceSettings, under_data_dir
from infra.processes import ManagedProcess, ProcessError, wait_ready

KAFKA_DIR = Path(__file__).parent / "kafka"
"""The Maven project and logging configuration the local broker is built and run with."""


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
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    seaweedfs_module: str = "github.com/seaweedfs/seaweedfs"
    seaweedfs_version: str = "v0.0.0-20261109003541-7506e5f91cd6"
    seaweedfs_master_port: int = 9333
    seaweedfs_volume_port: int = 8080
    seaweedfs_filer_port: int = 8888
    start_timeout_s: float = 90.0


class InfraSettings(ServiceSettings):
    stack: StackConfig = Field(default_factory=StackConfig)


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def _port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Service:
    name: str

    def __init__(self, settings: InfraSettings) -> None:
        self.settings = settings
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

    def up(self) -> str:
        pid = self.process.running_pid()
        if pid is not None and self.healthy():
            return "running"
        if pid is not None:
            # Ours but not answering: probably still starting from an earlier ``up``.
            self._wait_healthy()
            self.after_start()
            return "running"
        host, port = _split_host_port(self.endpoint())
        if _port_open(host, port):
            raise InfraError(self.name, f"{host}:{port} is taken by a process this stack did not start")
        argv = self.prepare()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process.start(argv, cwd=self.dir)
        self._wait_healthy()
        self.after_start()
        return "started"

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


class KafkaService(Service):
    name = "kafka"

    def endpoint(self) -> str:
        return self.settings.kafka.bootstrap_servers.split(",")[0]

    def healthy(self) -> bool:
        host, port = _split_host_port(self.endpoint())
        if not _port_open(host, port):
            return False
        try:
            metadata = AdminClient({**self.settings.kafka.client_config(), "log_level": 0}).list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def _classpath(self) -> str:
        version = self.settings.stack.kafka_version
        cached = self.settings.stack.cache_dir / f"kafka-{version}.classpath"
        if cached.exists():
            classpath = cached.read_text().strip()
            if all(Path(jar).exists() for jar in classpath.split(":")):
                return classpath
        if shutil.which("mvn") is None:
            raise InfraError(self.name, "Maven (mvn) is not on PATH; it resolves Kafka from Maven Central")
        cached.parent.mkdir(parents=True, exist_ok=True)
        pom = KAFKA_DIR / "pom.xml"
        print(f"resolving Apache Kafka {version} from Maven Central ...", file=sys.stderr, flush=True)
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(pom),
                f"-Dkafka.version={version}",
                "dependency:build-classpath",
                f"-Dmdep.outputFile={cached}",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise InfraError(self.name, f"mvn failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return cached.read_text().strip()

    def prepare(self) -> list[str]:
        classpath = self._classpath()
        host, port = _split_host_port(self.endpoint())
        controller = f"{host}:{self.settings.stack.kafka_controller_port}"
        if _port_open(host, self.settings.stack.kafka_controller_port):
            raise InfraError(self.name, f"controller port {controller} is taken")
        data_dir = self.dir / "data"
        properties = self.dir / "server.properties"
        self.dir.mkdir(parents=True, exist_ok=True)
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{controller}",
                    f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
                    f"advertised.listeners=PLAINTEXT://{host}:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={data_dir}",
                    # Topics are declared by the project (infra, Faust); a typo must not create one.
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "log.segment.bytes=268435456",
                    "",
                ]
            )
        )
        java = [
            "java",
            f"-Xmx{self.settings.stack.kafka_heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.yaml'}",
            "-cp",
            classpath,
        ]
        if not (data_dir / "meta.properties").exists():
            cluster_id = (
                subprocess.run(
                    [*java, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            result = subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise InfraError(self.name, f"storage format failed: {result.stdout}{result.stderr}")
        return [*java, "kafka.Kafka", str(properties)]

    def after_start(self) -> None:
        wait_for_broker(self.settings.kafka)
        ensure_topics(self.settings.kafka)


class ObjectStoreService(Service):
    """SeaweedFS (Apache-2.0): master, volume, filer and S3 gateway in one ``weed server``."""

    name = "s3"

    def endpoint(self) -> str:
        return self.settings.s3.endpoint

    def healthy(self) -> bool:
        host, port = _split_host_port(self.endpoint())
        if not _port_open(host, port):
            return False
        try:
            urllib.request.urlopen(f"http://{host}:{port}/", timeout=2)
        except urllib.error.HTTPError:
            return True  # anonymous requests are refused, which proves the gateway answers
        except OSError:
            return False
        return True

    def _binary(self) -> Path:
        version = self.settings.stack.seaweedfs_version
        binary = self.settings.stack.cache_dir / "bin" / f"weed-{version}"
        if binary.exists():
            return binary
        if shutil.which("go") is None:
            raise InfraError(self.name, "Go is not on PATH; SeaweedFS is built from the Go module proxy")
        print(
            f"building SeaweedFS {version} from the Go module proxy (a few minutes, once) ...",
            file=sys.stderr,
            flush=True,
        )
        module = f"{self.settings.stack.seaweedfs_module}@{version}"
        download = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True)
        if download.returncode != 0:
            raise InfraError(self.name, f"go mod download {module} failed: {download.stdout}{download.stderr}")
        source = Path(json.loads(download.stdout)["Dir"])
        binary.parent.mkdir(parents=True, exist_ok=True)
        # ``go install pkg@version`` refuses modules with replace directives; building inside the
        # downloaded module honours them and gives the same binary.
        partial = binary.with_suffix(".partial")
        build = subprocess.run(
            ["go", "build", "-o", str(partial), "./weed"], cwd=source, capture_output=True, text=True
        )
        if build.returncode != 0:
            raise InfraError(self.name, f"go build failed: {build.stderr[-3000:]}")
        partial.rename(binary)
        return binary

    def prepare(self) -> list[str]:
        binary = self._binary()
        host, port = _split_host_port(self.endpoint())
        for extra in (
            self.settings.stack.seaweedfs_master_port,
            self.settings.stack.seaweedfs_volume_port,
            self.settings.stack.seaweedfs_filer_port,
        ):
            if _port_open(host, extra):
                raise InfraError(self.name, f"port {host}:{extra} is taken")
        data_dir = self.dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        identities = self.dir / "s3.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "funnelstream",
                            "credentials": [
                                {
                                    "accessKey": self.settings.s3.access_key,
                                    "secretKey": self.settings.s3.secret_key.get_secret_value(),
                                }
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        identities.chmod(0o600)
        return [
            str(binary),
            "server",
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-dir={data_dir}",
            f"-master.port={self.settings.stack.seaweedfs_master_port}",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={self.settings.stack.seaweedfs_volume_port}",
            "-volume.max=0",
            # The default 10 s pre-stop grace is for clusters; alone, it only slows `down`.
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",
            f"-filer.port={self.settings.stack.seaweedfs_filer_port}",
            "-s3",
            f"-s3.port={port}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def after_start(self) -> None:
        client = make_client(self.settings.s3)
        deadline = time.monotonic() + self.settings.stack.start_timeout_s
        while True:
            try:
                ensure_bucket(client, self.settings.s3.bucket)
                return
            except Exception as exc:  # the filer may lag the gateway by a moment at start-up
                if time.monotonic() > deadline:
                    raise InfraError(self.name, f"bucket creation failed: {exc}", self.process.log_file) from exc
                time.sleep(0.5)


SERVICES: dict[str, Callable[[InfraSettings], Service]] = {"kafka": KafkaService, "s3": ObjectStoreService}


def _selected(names: list[str] | None) -> list[str]:
    chosen = names or list(SERVICES)
    unknown = [name for name in chosen if name not in SERVICES]
    if unknown:
        raise SystemExit(f"unknown service(s) {unknown}; choose from {list(SERVICES)}")
    return chosen


def up(names: list[str] | None = None, settings: InfraSettings | None = None) -> dict[str, str]:
    settings = settings or InfraSettings()
    settings.stack.dir.mkdir(parents=True, exist_ok=True)
    return {name: SERVICES[name](settings).up() for name in _selected(names)}


def down(names: list[str] | None = None, settings: InfraSettings | None = None) -> dict[str, bool]:
    settings = settings or InfraSettings()
    return {name: SERVICES[name](settings).down() for name in reversed(_selected(names))}


def status(settings: InfraSettings | None = None) -> dict[str, dict[str, object]]:
    settings = settings or InfraSettings()
    report: dict[str, dict[str, object]] = {}
    for name, factory in SERVICES.items():
        service = factory(settings)
        report[name] = {
            "pid": service.process.running_pid(),
            "healthy": service.healthy(),
            "endpoint": service.endpoint(),
            "log": str(service.process.log_file),
        }
    report["clickhouse"] = {
        "pid": None,
        "healthy": True,
        "endpoint": settings.clickhouse.url or f"chdb (embedded) at {settings.clickhouse.chdb_path}",
        "log": "",
    }
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in {"up", "down", "status"}:
        print("usage: python -m infra up|down|status [kafka] [s3]", file=sys.stderr)
        return 2
    command, names = args[0], args[1:] or None
    started = time.monotonic()
    try:
        if command == "up":
            for name, state in up(names).items():
                print(f"{name:<6} {state}")
        elif command == "down":
            for name, stopped in down(names).items():
                print(f"{name:<6} {'stopped' if stopped else 'was not running'}")
        else:
            rows = status()
            for name, row in rows.items():
                state = "up" if row["healthy"] else "down"
                print(f"{name:<10} {state:<5} pid={row['pid'] or '-':<8} {row['endpoint']}")
            return 0 if all(row["healthy"] for row in rows.values()) else 1
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"({command} took {time.monotonic() - started:.1f}s)", file=sys.stderr)
    return 0
