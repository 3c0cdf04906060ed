"""The collector's unit-test fixtures: an app on the fake Kafka and object-store clients of tests/helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.app import create_app
from ingest.settings import IngestSettings
from tests.helpers.collector_fakes import FakeObjectStore, FakeProducer, unit_settings


@pytest.fixture
def fake_producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def fake_store() -> FakeObjectStore:
    return FakeObjectStore()


@pytest.fixture
def make_client(fake_producer: FakeProducer, fake_store: FakeObjectStore) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def build(settings: IngestSettings | None = None) -> TestClient:
        app: FastAPI = create_app(
            settings or unit_settings(), producer_factory=lambda _: fake_producer, store_factory=lambda _: fake_store
        )
        client = TestClient(app, client=("203.0.113.77", 50000))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
