"""Prometheus scrapes every service compose runs, and Grafana is provisioned with data sources the
dashboard actually uses; the dashboard's SQL runs against the real qa_results table."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from clickhouse.qa.checks import CHECKS
from clickhouse.qa.runner import run_checks, write_results
from tests.helpers.qa_warehouse import NOW, open_warehouse

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "infra" / "prometheus.yml").read_text())
DASHBOARD = json.loads((ROOT / "infra" / "grafana" / "dashboards" / "funnelstream.json").read_text())
PROVISIONING = ROOT / "infra" / "grafana" / "provisioning"
# Where each project service serves /metrics inside the compose network.
METRICS_PORTS = {"ingest": 8000, "stream-processor": 6066, "warehouse": 8100, "inference": 8200, "heartbeat": 9108}


def _scrape_targets() -> set[str]:
    return {
        target for job in PROMETHEUS["scrape_configs"] for conf in job["static_configs"] for target in conf["targets"]
    }


@pytest.mark.parametrize("service", sorted(METRICS_PORTS))
def test_prometheus_scrapes_every_service_on_the_port_it_serves(service: str) -> None:
    assert service in COMPOSE["services"]
    port = METRICS_PORTS[service]
    assert f"{service}:{port}" in _scrape_targets()
    command = " ".join(COMPOSE["services"][service]["command"])
    environment = COMPOSE["services"][service].get("environment", {})
    assert str(port) in command or str(port) == str(environment.get("FS_QA__HEARTBEAT_METRICS_PORT")), command


def _panels() -> list[dict]:  # type: ignore[type-arg]
    return [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]


def test_the_dashboard_uses_only_provisioned_data_sources() -> None:
    provisioned = {}
    for path in (PROVISIONING / "datasources").glob("*.yml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            provisioned[source["uid"]] = source["type"]
    used = {(panel["datasource"]["uid"], panel["datasource"]["type"]) for panel in _panels()}
    assert used <= set(provisioned.items())
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["targets"] for panel in _panels())


def test_grafana_loads_the_dashboard_from_the_mounted_folder() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "funnelstream.yml").read_text())["providers"][0]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in COMPOSE["services"]["grafana"]["volumes"]}
    folder = mounts[provider["options"]["path"]]
    assert (ROOT / folder / "funnelstream.json").is_file()
    assert "grafana-clickhouse-datasource" in COMPOSE["services"]["grafana"]["environment"]["GF_PLUGINS_PREINSTALL"]


@pytest.mark.integration
def test_the_dashboard_sql_runs_against_qa_results(tmp_path: Path) -> None:
    warehouse = open_warehouse(tmp_path / "chdb")
    try:
        write_results(warehouse, run_checks(warehouse, CHECKS, NOW - timedelta(hours=1), NOW))
        sql_panels = [p for p in _panels() if p["datasource"]["type"] == "grafana-clickhouse-datasource"]
        assert sql_panels
        for panel in sql_panels:
            # Grafana expands the macro to a range on the column; any true range will do here.
            sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= '2000-01-01'", panel["targets"][0]["rawSql"])
            rows = warehouse.query_rows(sql)
            assert rows, panel["title"]
        latest = warehouse.query_rows(sql_panels[0]["targets"][0]["rawSql"])
        assert {row["check"] for row in latest} == {check.name for check in CHECKS}
        assert latest[0]["last_run"] <= datetime.now(UTC)
    finally:
        warehouse.close()
