"""Apache Kafka on loopback: one KRaft node, or a cluster of ``FS_STACK__KAFKA_BROKERS`` of them.

Owns the nodes' configuration, their start and stop one by one (the faults the chaos scenarios do),
and the cluster's health as ``make status`` shows it: each broker, and the partitions whose replicas
are out of sync. Invariant: every node is a broker and a controller of the same quorum, node ``i``
(from 1) on the first bootstrap port plus ``i - 1``; a cluster's topics are created only once every
node has registered, so replication 3 is never refused for want of brokers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from funnelstream.kafka import ensure_topics, make_admin, serve_logs, wait_for_broker
from funnelstream.settings import KafkaConfig
from infra.service import InfraError, InfraSettings, Service, port_open, split_host_port

KAFKA_DIR = Path(__file__).parent / "kafka"
"""The Maven project and logging configuration the local broker is built and run with."""

CLUSTER_ID_FILE = "cluster.id"


def broker_addresses(settings: InfraSettings) -> list[str]:
    """Each node's client address, node 1 first."""
    host, port = split_host_port(settings.kafka.bootstrap_servers.split(",")[0])
    return [f"{host}:{port + index}" for index in range(settings.stack.kafka_brokers)]


def cluster_kafka_config(settings: InfraSettings) -> KafkaConfig:
    """What a client of this stack's cluster needs: every node to bootstrap from (a restarted
    service must find the cluster while any one node is away) and, in the cluster form, replication
    ``min(3, N)`` with ``min.insync.replicas`` one less, unless the settings chose them."""
    brokers = settings.stack.kafka_brokers
    chosen = settings.kafka.model_fields_set
    update: dict[str, object] = {"bootstrap_servers": ",".join(broker_addresses(settings))}
    if brokers > 1 and "replication_factor" not in chosen:
        update["replication_factor"] = min(3, brokers)
    if brokers > 1 and "min_insync_replicas" not in chosen:
        update["min_insync_replicas"] = max(1, min(3, brokers) - 1)
    return settings.kafka.model_copy(update=update)


def client_env(settings: InfraSettings) -> dict[str, str]:
    """``FS_KAFKA__*`` for a service that runs against this stack's cluster."""
    config = cluster_kafka_config(settings)
    return {
        "FS_KAFKA__BOOTSTRAP_SERVERS": config.bootstrap_servers,
        "FS_KAFKA__REPLICATION_FACTOR": str(config.replication_factor),
        "FS_KAFKA__MIN_INSYNC_REPLICAS": str(config.min_insync_replicas),
    }


class KafkaBroker(Service):
    """One KRaft node: its own data folder, log, pid file and ports."""

    def __init__(self, settings: InfraSettings, node_id: int) -> None:
        self.node_id = node_id
        single = settings.stack.kafka_brokers == 1
        super().__init__(settings, "kafka" if single else f"kafka-{node_id}")
        self.address = broker_addresses(settings)[node_id - 1]
        self.config = cluster_kafka_config(settings)

    def endpoint(self) -> str:
        return self.address

    def controller_address(self, node_id: int | None = None) -> str:
        host, _ = split_host_port(self.address)
        return f"{host}:{self.settings.stack.kafka_controller_port + (node_id or self.node_id) - 1}"

    def healthy(self) -> bool:
        host, port = split_host_port(self.address)
        if not port_open(host, port):
            return False
        try:
            admin = make_admin(self.config, **{"bootstrap.servers": self.address})
            metadata = admin.list_topics(timeout=2)
            serve_logs(admin)
        except Exception:
            return False
        # Registered with the quorum: the cluster's metadata, served by this node, names it.
        return self.node_id in metadata.brokers

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

    def _properties(self, data_dir: Path) -> str:
        brokers = self.settings.stack.kafka_brokers
        host, port = split_host_port(self.address)
        voters = ",".join(f"{node}@{self.controller_address(node)}" for node in range(1, brokers + 1))
        # Kafka's own topics follow the project's: replicated as widely as the cluster allows.
        replicas = min(3, brokers)
        insync = self.config.min_insync_replicas
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={self.node_id}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{self.controller_address()}",
                f"advertised.listeners=PLAINTEXT://{host}:{port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data_dir}",
                # Topics are declared by the project (infra, Faust); a typo must not create one.
                "auto.create.topics.enable=false",
                f"default.replication.factor={self.config.replication_factor}",
                f"min.insync.replicas={insync}",
                f"offsets.topic.replication.factor={replicas}",
                "offsets.topic.num.partitions=8",
                f"transaction.state.log.replication.factor={replicas}",
                f"transaction.state.log.min.isr={insync}",
                "transaction.state.log.num.partitions=4",
                f"share.coordinator.state.topic.replication.factor={replicas}",
                f"share.coordinator.state.topic.min.isr={insync}",
                "group.initial.rebalance.delay.ms=0",
                # The controller fences a silent node after this long and moves its leaderships and
                # in-sync places; 9 s by default, 4 s on loopback, where a missed heartbeat is a death.
                "broker.session.timeout.ms=4000",
                "broker.heartbeat.interval.ms=500",
                # A follower that stops fetching leaves the in-sync set after this long, so a
                # killed broker stops holding back acks=all within seconds, not the default 30 s.
                "replica.lag.time.max.ms=10000",
                "num.network.threads=2",
                "num.io.threads=4",
                "log.segment.bytes=268435456",
                "",
            ]
        )

    def _cluster_id(self, java: list[str]) -> str:
        """One id for every node of this stack: the first node to be formatted draws it."""
        path = self.settings.stack.dir / CLUSTER_ID_FILE
        if path.exists():
            return path.read_text().strip()
        drawn = subprocess.run(
            [*java, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
        )
        cluster_id = drawn.stdout.strip().splitlines()[-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cluster_id)
        return cluster_id

    def prepare(self) -> list[str]:
        classpath = self._classpath()
        controller_host, controller_port = split_host_port(self.controller_address())
        if port_open(controller_host, controller_port):
            raise InfraError(self.name, f"controller port {self.controller_address()} is taken")
        data_dir = self.dir / "data"
        properties = self.dir / "server.properties"
        self.dir.mkdir(parents=True, exist_ok=True)
        properties.write_text(self._properties(data_dir))
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
            result = subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", "-t", self._cluster_id(java), "-c", str(properties)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise InfraError(self.name, f"storage format failed: {result.stdout}{result.stderr}")
        return [*java, "kafka.Kafka", str(properties)]

    def kill(self) -> bool:
        """``kill -9``: no controlled shutdown, no flush; what a power cut does."""
        return self.process.stop(timeout_s=0.0)


@dataclass(frozen=True)
class PartitionHealth:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.in_sync) < len(self.replicas)


class KafkaService(Service):
    """The whole cluster as one service of the stack: ``up`` starts every node, then the topics."""

    name = "kafka"

    def __init__(self, settings: InfraSettings) -> None:
        super().__init__(settings)
        self.brokers = [KafkaBroker(settings, node) for node in range(1, settings.stack.kafka_brokers + 1)]
        self.config = cluster_kafka_config(settings)
        self.process = self.brokers[0].process

    def endpoint(self) -> str:
        return self.config.bootstrap_servers

    def broker(self, node_id: int) -> KafkaBroker:
        return self.brokers[node_id - 1]

    def healthy(self) -> bool:
        return all(broker.healthy() for broker in self.brokers)

    def up(self) -> str:
        states = [broker.start() for broker in self.brokers]
        for broker in self.brokers:
            broker._wait_healthy()
        self.after_start()
        return "running" if all(state == "running" for state in states) else "started"

    def after_start(self) -> None:
        wait_for_broker(self.config)
        ensure_topics(self.config)

    def down(self) -> bool:
        stopped = [broker.down() for broker in reversed(self.brokers)]
        return any(stopped)

    def partitions(self, timeout_s: float = 5.0) -> list[PartitionHealth]:
        """Every partition the cluster reports, with its leader (-1: none) and in-sync replicas."""
        admin = make_admin(self.config)
        metadata = admin.list_topics(timeout=timeout_s)
        serve_logs(admin)
        return [
            PartitionHealth(name, number, part.leader, tuple(part.replicas), tuple(part.isrs))
            for name, topic in sorted(metadata.topics.items())
            for number, part in sorted(topic.partitions.items())
        ]
