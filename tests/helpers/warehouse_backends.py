"""A fresh migrated warehouse database per backend: chdb here; a ClickHouse server when FS_TEST_CLICKHOUSE_URL
names one (http://user:password@host:8123), skipped with that reason otherwise."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from clickhouse.backend import Warehouse, open_warehouse
from clickhouse.migrate import migrate
from funnelstream.settings import ClickHouseConfig

SERVER_URL_VARIABLE = "FS_TEST_CLICKHOUSE_URL"
BACKENDS = [
    "chdb",
    pytest.param(
        "server",
        marks=[
            pytest.mark.integration,
            pytest.mark.skipif(
                not os.environ.get(SERVER_URL_VARIABLE),
                reason=f"no ClickHouse server: set {SERVER_URL_VARIABLE}=http://user:password@host:8123 to run",
            ),
        ],
    ),
]


def open_test_warehouse(backend: str, path: Path) -> tuple[Warehouse, ClickHouseConfig]:
    """A fresh database on the backend. chdb lets a process use one data path at a time, so the
    tests of one process share a path and keep apart by database."""
    database = f"fs_test_{uuid.uuid4().hex[:10]}"
    if backend == "server":
        config = ClickHouseConfig(url=os.environ[SERVER_URL_VARIABLE], database=database)
    else:
        config = ClickHouseConfig(chdb_path=path, database=database)
    warehouse = open_warehouse(config)
    migrate(warehouse)
    return warehouse, config


def drop_and_close(warehouse: Warehouse) -> None:
    warehouse.command(f"DROP DATABASE IF EXISTS {warehouse.database}")
    warehouse.close()
