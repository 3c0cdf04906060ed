"""While ``warehouse serve`` owns an embedded warehouse, QA and status read through its API and
get the same answers as reading the engine directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clickhouse.api import create_app
from clickhouse.qa.checks import CHECKS
from clickhouse.qa.remote import WarehouseApi
from clickhouse.qa.runner import Status, run_checks
from clickhouse.settings import DEV_READ_KEY, WarehouseSettings
from ops.heartbeat import make_heartbeat
from ops.status import heartbeat_freshness
from tests.helpers.heartbeats import enriched
from tests.helpers.qa_warehouse import (
    NOW,
    load_events,
    load_sessions,
    open_warehouse,
    orphan_tool_clicks,
    simulated,
)

pytestmark = pytest.mark.integration


def test_checks_through_the_api_match_the_engine(tmp_path: Path) -> None:
    warehouse = open_warehouse(tmp_path / "chdb")
    events, sessions = simulated(users=150, window=timedelta(hours=6), now=NOW)
    at = NOW - timedelta(hours=1)
    orphans = orphan_tool_clicks(5, at)
    heartbeat_at = datetime(2026, 11, 26, 11, 59, 50, tzinfo=UTC)
    load_events(warehouse, [*events, *orphans, enriched(make_heartbeat("test", heartbeat_at))])
    load_sessions(warehouse, sessions)
    window = (NOW - timedelta(hours=8), NOW)
    try:
        direct = run_checks(warehouse, CHECKS, *window)
        app = create_app(WarehouseSettings(), warehouse=warehouse, run_loader=False)
        with TestClient(app) as client:
            api = WarehouseApi("http://testserver", read_key=DEV_READ_KEY, client=client)
            assert api.ready()
            remote = run_checks(api, CHECKS, *window)
            freshness = heartbeat_freshness(api, NOW)
    finally:
        warehouse.close()
    assert [r.status for r in remote.results] == [r.status for r in direct.results]
    assert all(r.error is None for r in remote.results), [r.error for r in remote.results if r.error]
    failed = {r.check.name for r in remote.results if r.status is Status.FAIL}
    assert "orphan_steps" in failed
    for ours, theirs in zip(remote.results, direct.results, strict=True):
        assert [(f.subject, f.affected, f.total) for f in ours.rows] == [
            (f.subject, f.affected, f.total) for f in theirs.rows
        ]
        assert [f.value for f in ours.rows] == pytest.approx([f.value for f in theirs.rows])
    assert freshness.heartbeats == 1 and freshness.age_s == pytest.approx(10, abs=0.01)
