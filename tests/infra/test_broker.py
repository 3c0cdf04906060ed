"""The cluster form of the local stack: three KRaft nodes, topics at replication 3 and
``min.insync.replicas`` 2, and what ``make status`` says about them.

A private cluster on its own ports and data folder, so the suite's broker is untouched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

from funnelstream.kafka import producer_config
from funnelstream.topics import Topic
from infra.broker import KafkaService, client_env, cluster_kafka_config
from infra.stack import InfraSettings, main, out_of_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, infra_settings: InfraSettings) -> Iterator[KafkaService]:
    settings = InfraSettings(
        kafka={"bootstrap_servers": "127.0.0.1:29292", "partitions": 3},
        stack={
            "dir": tmp_path_factory.mktemp("cluster"),
            "cache_dir": infra_settings.stack.cache_dir,
            "kafka_brokers": 3,
            "kafka_controller_port": 29392,
        },
    )
    service = KafkaService(settings)
    try:
        service.up()
        yield service
    finally:
        service.down()


def _wait_for(condition, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.5)


def _deliver(config: dict[str, object]) -> KafkaError | None:
    outcome: list[KafkaError | None] = []
    producer = Producer(config)
    producer.produce(str(Topic.EVENTS_RAW), b"{}", key=b"device", on_delivery=lambda err, _: outcome.append(err))
    producer.flush(30)
    assert outcome, "no delivery report"
    return outcome[0]


def test_the_cluster_form_derives_its_clients_settings() -> None:
    settings = InfraSettings(kafka={"bootstrap_servers": "127.0.0.1:9092"}, stack={"kafka_brokers": 3})
    assert client_env(settings) == {
        "FS_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094",
        "FS_KAFKA__REPLICATION_FACTOR": "3",
        "FS_KAFKA__MIN_INSYNC_REPLICAS": "2",
    }
    chosen = InfraSettings(kafka={"replication_factor": 2, "min_insync_replicas": 1}, stack={"kafka_brokers": 3})
    assert (cluster_kafka_config(chosen).replication_factor, cluster_kafka_config(chosen).min_insync_replicas) == (2, 1)
    single = cluster_kafka_config(InfraSettings())
    assert (single.replication_factor, single.min_insync_replicas) == (1, 1)


def test_every_topic_has_three_in_sync_replicas_on_distinct_brokers(cluster: KafkaService) -> None:
    partitions = [p for p in cluster.partitions() if p.topic == str(Topic.EVENTS_RAW)]
    assert len(partitions) == 3
    for partition in partitions:
        assert sorted(partition.replicas) == [1, 2, 3]
        assert sorted(partition.in_sync) == [1, 2, 3]
    # Leadership is spread, so a single kill moves some partitions and leaves others.
    assert len({p.leader for p in partitions}) > 1
    assert out_of_sync(cluster.settings) == []


def test_a_produce_is_refused_while_only_one_replica_is_in_sync(cluster: KafkaService) -> None:
    for node in (2, 3):
        cluster.broker(node).down()
    try:
        _wait_for(lambda: all(p.in_sync == (1,) for p in cluster.partitions() if p.topic == str(Topic.EVENTS_RAW)))
        bootstrap = cluster.broker(1).address
        # Without retries the broker's own answer comes back: not enough replicas.
        plain = {"bootstrap.servers": bootstrap, "acks": "all", "retries": 0, "log_level": 0}
        refused = _deliver(plain)
        assert refused is not None and refused.code() == KafkaError.NOT_ENOUGH_REPLICAS
        # The collector's own producer (idempotent, retrying) is never acknowledged either: its
        # 202 waits for this report, so it answers 503 instead.
        collector = producer_config(cluster.config, **{"bootstrap.servers": bootstrap, "message.timeout.ms": 5000})
        assert _deliver({**collector, "log_level": 0}) is not None

        lagging = out_of_sync(cluster.settings)
        assert any(line.startswith(f"{Topic.EVENTS_RAW}[") and "in-sync=[1]" in line for line in lagging)
    finally:
        for node in (2, 3):
            cluster.broker(node).start()
        for node in (2, 3):
            cluster.broker(node).up()
    _wait_for(lambda: out_of_sync(cluster.settings) == [], timeout_s=60)
    assert _deliver({**producer_config(cluster.config), "log_level": 0}) is None


def test_status_names_each_broker(cluster: KafkaService, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    settings = cluster.settings
    monkeypatch.setenv("FS_KAFKA__BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("FS_STACK__KAFKA_BROKERS", "3")
    monkeypatch.setenv("FS_STACK__KAFKA_CONTROLLER_PORT", str(settings.stack.kafka_controller_port))
    monkeypatch.setenv("FS_STACK__DIR", str(settings.stack.dir))
    main(["status"])
    printed = capsys.readouterr().out
    for node, port in ((1, 29292), (2, 29293), (3, 29294)):
        assert f"kafka-{node}" in printed and f"127.0.0.1:{port}" in printed
    assert "partitions out of sync: 0" in printed
    assert Path(settings.stack.dir, "kafka-2", "kafka-2.log").exists()
