"""Run the whole pipeline on a private set of topics and consumer groups.

The demo and the browser tests share a broker with everything else; a namespace
(``FS_KAFKA__NAMESPACE``) gives each run its own ``<namespace>.events.raw`` and friends, and its
own consumer groups, so what it shows is only its own traffic. Production runs without one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from clickhouse.settings import WarehouseSettings, read_key_headers
from funnelstream.kafka import ensure_topics, make_admin, serve_logs
from funnelstream.settings import KafkaConfig, ServiceSettings
from funnelstream.topics import TOPIC_SPECS, in_namespace
from infra.stack import up
from ops.processes import ServiceProcess
from stream_processors.dimensions import SEED_FILE


def namespaced_env(namespace: str) -> dict[str, str]:
    """Environment that points every service at the namespace's topics and consumer groups."""
    return {"FS_KAFKA__NAMESPACE": namespace}


def create_namespace_topics(config: KafkaConfig, namespace: str) -> list[str]:
    specs = [replace(spec, topic=in_namespace(spec.topic, namespace)) for spec in TOPIC_SPECS]  # type: ignore[arg-type]
    return ensure_topics(config, specs)


def delete_namespace_topics(config: KafkaConfig, namespace: str) -> list[str]:
    """Remove the namespace's topics, Faust's changelog topics of its app id included."""
    admin = make_admin(config)
    doomed = [
        name
        for name in admin.list_topics(timeout=10).topics
        if name.startswith(f"{namespace}.") or name.startswith(f"{namespace}-")
    ]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result()
    serve_logs(admin)
    return doomed


@dataclass(frozen=True)
class Ports:
    ingest: int = 8000
    warehouse: int = 8100
    inference: int = 8200
    stream_web: int = 6066

    @classmethod
    def from_base(cls, base: int) -> Ports:
        """Four consecutive ports from ``base``: a private run's services."""
        return cls(base, base + 1, base + 2, base + 3)


def warehouse_read_key(env: dict[str, str]) -> str:
    """The read key of a run's warehouse: the run's own FS_WAREHOUSE__READ_KEY, else this process's."""
    return env.get("FS_WAREHOUSE__READ_KEY") or WarehouseSettings().warehouse.read_key.get_secret_value()


def pipeline_services(log_dir: Path, env: dict[str, str], ports: Ports) -> list[ServiceProcess]:
    """The four services, each its own process, in the order they should start."""
    local = "127.0.0.1"
    return [
        ServiceProcess("warehouse", ["warehouse", "serve", "--host", local, "--port", str(ports.warehouse)], log_dir,
                       env, ready_url=f"http://{local}:{ports.warehouse}/readyz",
                       ready_headers=read_key_headers(warehouse_read_key(env))),
        ServiceProcess("stream", ["stream", "worker", "--web-port", str(ports.stream_web)], log_dir, env,
                       ready_url=f"http://{local}:{ports.stream_web}/healthz"),
        ServiceProcess("inference", ["inference", "serve", "--port", str(ports.inference)], log_dir, env,
                       ready_url=f"http://{local}:{ports.inference}/readyz"),
        ServiceProcess("ingest", ["ingest", "serve", "--host", local, "--port", str(ports.ingest)], log_dir, env,
                       ready_url=f"http://{local}:{ports.ingest}/readyz"),
    ]  # fmt: skip


def load_seed_dimensions(env: dict[str, str], log_file: Path) -> None:
    """Publish the shipped tools and inferences to the (namespaced) dimension topics; what the tool
    says goes to ``log_file``, not to the caller's console."""
    command = [sys.executable, "-m", "ops.cli", "dims", "load", str(SEED_FILE)]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        subprocess.run(command, check=True, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)


class LocalPipeline:
    """The four services on one broker, started and stopped as a unit: load runs and failure tests.

    ``namespace`` gives the run its own topics and groups on a shared broker; ``None`` uses the
    project's topic names, for a broker that belongs to this run alone. ``env`` overrides settings
    of every service (a private broker's address, a shorter session timeout, ...).
    """

    def __init__(
        self,
        workdir: Path,
        ports: Ports,
        kafka: KafkaConfig,
        namespace: str | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.ports = ports
        self.kafka = kafka
        self.namespace = namespace
        self.env = {
            **(namespaced_env(namespace) if namespace else {}),
            "FS_PATHS__DATA_DIR": str(workdir),
            "FS_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.services = {service.name: service for service in pipeline_services(workdir / "logs", self.env, ports)}

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ingest}"

    @property
    def warehouse_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.warehouse}"

    @property
    def warehouse_read_key(self) -> str:
        return warehouse_read_key(self.env)

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    def start(self, ready_timeout_s: float = 180.0) -> LocalPipeline:
        if self.namespace:
            create_namespace_topics(self.kafka, self.namespace)
        # Dimensions first, so the stream processor knows every tool from its first event.
        load_seed_dimensions(self.env, self.workdir / "logs" / "dims.log")
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            service.wait_ready(ready_timeout_s)
        return self

    def restart(self, name: str, ready_timeout_s: float = 180.0) -> None:
        service = self.services[name]
        service.start()
        service.wait_ready(ready_timeout_s)

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        if self.namespace:
            delete_namespace_topics(self.kafka, self.namespace)

    def __enter__(self) -> LocalPipeline:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def local_pipeline(
    purpose: str = "load", ports: Ports = Ports(18_500, 18_501, 18_502, 18_503)
) -> Iterator[LocalPipeline]:
    """The four services on the local stack (started if needed), on topics and a warehouse of their own."""
    up()
    run_id = uuid.uuid4().hex[:8]
    settings = ServiceSettings()
    workdir = settings.paths.data_dir / purpose / run_id
    try:
        with LocalPipeline(workdir, ports, settings.kafka, namespace=f"{purpose}-{run_id}") as pipeline:
            yield pipeline
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
