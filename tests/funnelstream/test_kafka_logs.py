"""librdkafka's log lines from clients built by ``funnelstream.kafka`` reach Python logging at their
level and never the process's stderr (fd 2), where librdkafka writes them by default."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaException, Producer

from funnelstream.kafka import RDKAFKA_LOG, make_admin, make_consumer, make_producer, private_group, serve_logs
from funnelstream.settings import KafkaConfig

RAW_MARKS = ("%3|", "%4|", "|FAIL|", "rdkafka#")


@pytest.fixture
def closed_port_config() -> KafkaConfig:
    """A cluster address nothing listens on: every connection attempt fails and librdkafka says so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}")


@pytest.fixture
def rdkafka_records(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """The librdkafka logger's records, caught at the logger itself: a handler another test left on
    an ancestor (a stream it has closed since) must not write them, or its complaint, to stderr."""
    monkeypatch.setattr(RDKAFKA_LOG, "propagate", False)
    monkeypatch.setattr(RDKAFKA_LOG, "handlers", [caplog.handler])
    caplog.set_level(logging.DEBUG, logger=RDKAFKA_LOG.name)
    return caplog


def _connect_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record for record in caplog.records if record.name == RDKAFKA_LOG.name and "Connect to" in record.getMessage()
    ]


def _poll_until_logged(poll: Callable[[], object], caplog: pytest.LogCaptureFixture, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not _connect_failures(caplog) and time.monotonic() < deadline:
        poll()


def _assert_logged_not_printed(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    failures = _connect_failures(caplog)
    assert failures, "no librdkafka connect failure reached the logger"
    # librdkafka's level 3 (LOG_ERR), as logging's ERROR.
    assert {record.levelno for record in failures} == {logging.ERROR}
    assert "FAIL" in failures[0].getMessage()
    err = capfd.readouterr().err
    assert not [mark for mark in RAW_MARKS if mark in err], err[:500]


def test_a_plain_client_writes_raw_lines_to_fd_2(
    closed_port_config: KafkaConfig, capfd: pytest.CaptureFixture[str]
) -> None:
    """The control: without the factory's logger the same failure is a raw line on stderr, so the
    tests below would see one if the factory let it through."""
    producer = Producer(closed_port_config.client_config())
    deadline = time.monotonic() + 10
    err = ""
    while "|FAIL|" not in err and time.monotonic() < deadline:
        producer.poll(0.1)
        err += capfd.readouterr().err
    assert "%3|" in err and "|FAIL|rdkafka#producer" in err


def test_a_producer_logs_through_python_logging(
    closed_port_config: KafkaConfig, rdkafka_records: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog = rdkafka_records
    producer = make_producer(closed_port_config)
    _poll_until_logged(lambda: producer.poll(0.1), caplog)
    _assert_logged_not_printed(caplog, capfd)


def test_a_consumer_logs_through_python_logging(
    closed_port_config: KafkaConfig, rdkafka_records: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog = rdkafka_records
    consumer = make_consumer(closed_port_config, private_group("log-test"))
    consumer.subscribe(["log-test"])
    try:
        _poll_until_logged(lambda: consumer.poll(0.1), caplog)
    finally:
        consumer.close()
    _assert_logged_not_printed(caplog, capfd)


def test_an_admin_client_logs_through_python_logging(
    closed_port_config: KafkaConfig, rdkafka_records: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog = rdkafka_records
    admin = make_admin(closed_port_config)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1)

    def serve() -> None:
        serve_logs(admin)
        time.sleep(0.1)

    _poll_until_logged(serve, caplog)
    _assert_logged_not_printed(caplog, capfd)
