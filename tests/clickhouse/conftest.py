"""The warehouse fixture: a fresh migrated database per backend (tests/helpers/warehouse_backends.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clickhouse.backend import Warehouse
from tests.helpers.warehouse_backends import BACKENDS, drop_and_close, open_test_warehouse


@pytest.fixture(scope="session")
def shared_chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("warehouse")) / "chdb"


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, shared_chdb_path: Path) -> Iterator[Warehouse]:
    opened, _ = open_test_warehouse(request.param, shared_chdb_path)
    yield opened
    drop_and_close(opened)
