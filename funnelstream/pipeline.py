"""Run the whole pipeline on a private set of topics and consumer groups.

The demo and the browser tests share a broker with everything else; a namespace gives each run its
own ``<namespace>.events.raw`` and friends, so what it shows is only its own traffic. Production
runs without a namespace, on the topic names of :class:`funnelstream.topics.Topic`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from funnelstream.kafka import ensure_topics
from funnelstream.processes import ServiceProcess
from funnelstream.settings import KafkaConfig
from funnelstream.topics import TOPIC_SPECS, Topic


def topic_name(namespace: str, topic: Topic) -> str:
    return f"{namespace}.{topic}"


def namespaced_env(namespace: str) -> dict[str, str]:
    """Environment that points every service at the namespace's topics and groups."""

    def t(topic: Topic) -> str:
        return topic_name(namespace, topic)

    return {
        # collector
        "FS_INGEST__EVENTS_TOPIC": t(Topic.EVENTS_RAW),
        "FS_INGEST__DLQ_TOPIC": t(Topic.EVENTS_DLQ),
        "FS_INGEST__JOBS_TOPIC": t(Topic.INFERENCE_JOBS),
        "FS_INGEST__RESULTS_TOPIC": t(Topic.INFERENCE_RESULTS),
        # stream processors
        "FS_STREAM__APP_ID": f"{namespace}-stream",
        "FS_STREAM__INPUT_TOPIC": t(Topic.EVENTS_RAW),
        "FS_STREAM__ENRICHED_TOPIC": t(Topic.EVENTS_ENRICHED),
        "FS_STREAM__SESSIONS_TOPIC": t(Topic.SESSIONS),
        "FS_STREAM__DLQ_TOPIC": t(Topic.EVENTS_DLQ),
        "FS_STREAM__TOOLS_TOPIC": t(Topic.DIMENSIONS_TOOLS),
        "FS_STREAM__INFERENCES_TOPIC": t(Topic.DIMENSIONS_INFERENCES),
        # warehouse loader
        "FS_LOADER_GROUP_ID": f"{namespace}-loader",
        "FS_LOADER_EVENTS_TOPIC": t(Topic.EVENTS_ENRICHED),
        "FS_LOADER_SESSIONS_TOPIC": t(Topic.SESSIONS),
        "FS_LOADER_DLQ_TOPIC": t(Topic.EVENTS_DLQ),
        "FS_LOADER_TOOLS_TOPIC": t(Topic.DIMENSIONS_TOOLS),
        "FS_LOADER_INFERENCES_TOPIC": t(Topic.DIMENSIONS_INFERENCES),
        # inference service
        "FS_INFERENCE__JOBS_TOPIC": t(Topic.INFERENCE_JOBS),
        "FS_INFERENCE__RESULTS_TOPIC": t(Topic.INFERENCE_RESULTS),
        "FS_INFERENCE__EVENTS_TOPIC": t(Topic.EVENTS_RAW),
        "FS_INFERENCE__DLQ_TOPIC": t(Topic.EVENTS_DLQ),
        "FS_INFERENCE__CONSUMER_GROUP": f"{namespace}-inference",
    }


def create_namespace_topics(config: KafkaConfig, namespace: str) -> list[str]:
    specs = [replace(spec, topic=topic_name(namespace, spec.topic)) for spec in TOPIC_SPECS]  # type: ignore[arg-type]
    return ensure_topics(config, specs)


def delete_namespace_topics(config: KafkaConfig, namespace: str) -> list[str]:
    """Remove the namespace's topics, Faust's changelog topics of its app id included."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(config.client_config())
    doomed = [
        name
        for name in admin.list_topics(timeout=10).topics
        if name.startswith(f"{namespace}.") or name.startswith(f"{namespace}-")
    ]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result()
    return doomed


@dataclass(frozen=True)
class Ports:
    ingest: int = 8000
    warehouse: int = 8100
    inference: int = 8200
    stream_web: int = 6066


def pipeline_services(log_dir: Path, env: dict[str, str], ports: Ports) -> list[ServiceProcess]:
    """The four services, each its own process, in the order they should start."""
    local = "127.0.0.1"
    return [
        ServiceProcess("warehouse", ["warehouse", "serve", "--host", local, "--port", str(ports.warehouse)], log_dir,
                       env, ready_url=f"http://{local}:{ports.warehouse}/readyz"),
        ServiceProcess("stream", ["stream", "worker", "--web-port", str(ports.stream_web)], log_dir, env,
                       ready_url=f"http://{local}:{ports.stream_web}/healthz"),
        ServiceProcess("inference", ["inference", "serve", "--port", str(ports.inference)], log_dir, env,
                       ready_url=f"http://{local}:{ports.inference}/readyz"),
        ServiceProcess("ingest", ["ingest", "serve", "--host", local, "--port", str(ports.ingest)], log_dir, env,
                       ready_url=f"http://{local}:{ports.ingest}/readyz"),
    ]  # fmt: skip


def load_seed_dimensions(env: dict[str, str]) -> None:
    """Publish the shipped tools and inferences to the (namespaced) dimension topics."""
    from stream_processors.dimensions import SEED_FILE

    command = [sys.executable, "-m", "funnelstream.cli", "dims", "load", str(SEED_FILE)]
    subprocess.run(command, check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
