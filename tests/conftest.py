"""Fixtures shared by the whole suite.

Real services come from session-scoped fixtures that start the local stack only when a test asks
for one, and stop at the end only what they started. A test that uses none of them is a unit test:
its environment points every client at an address that cannot resolve and its sockets cannot
connect to anything but loopback-less nowhere, so it cannot reach a service by accident.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.helpers.experiment_fixtures"]

# The suite shares the developer's local stack (``make up``) and writes nothing under the home directory.
os.environ.setdefault("FS_PATHS__DATA_DIR", str(Path(__file__).resolve().parent.parent / ".stack"))

SERVICE_FIXTURES = frozenset({"kafka", "s3", "minio_client", "chdb_session", "kafka_topic"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _unit_tests_reach_no_service(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("integration"):
        return
    for name in ("FS_KAFKA__BOOTSTRAP_SERVERS", "FS_S3__ENDPOINT"):
        monkeypatch.setenv(name, "unit-tests-reach-no-service.invalid:9")
    monkeypatch.delenv("FS_CLICKHOUSE__URL", raising=False)
    real_connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise RuntimeError(f"unit test tried to connect to {address}; mark it integration and use a fixture")
        real_connect(sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(scope="session")
def infra_settings():  # type: ignore[no-untyped-def]
    from infra.stack import InfraSettings

    return InfraSettings()


def _service(name: str, infra_settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    from infra.stack import down, up

    state = up([name], infra_settings)[name]
    yield
    if state == "started":
        down([name], infra_settings)


@pytest.fixture(scope="session")
def _kafka_service(infra_settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    yield from _service("kafka", infra_settings)


@pytest.fixture(scope="session")
def _s3_service(infra_settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    yield from _service("s3", infra_settings)


@pytest.fixture(scope="session")
def kafka(_kafka_service, infra_settings):  # type: ignore[no-untyped-def]
    """The local broker's KafkaConfig; the project's topics exist."""
    return infra_settings.kafka


@pytest.fixture(scope="session")
def s3(_s3_service, infra_settings):  # type: ignore[no-untyped-def]
    """The local S3 server's ObjectStoreConfig; the project's bucket exists."""
    return infra_settings.s3


@pytest.fixture(scope="session")
def minio_client(s3):  # type: ignore[no-untyped-def]
    from funnelstream.objectstore import make_client

    return make_client(s3)


@pytest.fixture
def kafka_topic(kafka) -> Callable[..., str]:  # type: ignore[no-untyped-def]
    """Create a topic with a unique name for one test: ``kafka_topic(partitions=4)``."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka.client_config())
    created: list[str] = []

    def create(prefix: str = "test", partitions: int = 1, compacted: bool = False) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        config = {"cleanup.policy": "compact"} if compacted else {}
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)])[
            name
        ].result()
        created.append(name)
        return name

    yield create  # type: ignore[misc]
    if created:
        for future in admin.delete_topics(created).values():
            future.result()


@pytest.fixture
def chdb_session(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An embedded ClickHouse (chdb) session on a fresh data path."""
    from chdb import session

    sess = session.Session(str(tmp_path / "chdb"))
    yield sess
    sess.close()
