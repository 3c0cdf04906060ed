"""docker-compose.yml describes a production stack that can start: checked without an engine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.settings_classes import variables_read

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROJECT_SERVICES = {"ingest", "stream-processor", "warehouse", "inference"}
INFRA_SERVICES = {"kafka", "clickhouse", "minio"}


def test_every_service_is_declared() -> None:
    assert set(COMPOSE["services"]) >= PROJECT_SERVICES | INFRA_SERVICES


def test_project_services_share_one_image_built_from_the_dockerfile() -> None:
    images = {COMPOSE["services"][name].get("image") for name in PROJECT_SERVICES}
    assert len(images) == 1
    assert (ROOT / "Dockerfile").exists()
    assert any("build" in COMPOSE["services"][name] for name in PROJECT_SERVICES)


@pytest.mark.parametrize("name", sorted(PROJECT_SERVICES | INFRA_SERVICES))
def test_each_service_has_a_healthcheck(name: str) -> None:
    check = COMPOSE["services"][name]["healthcheck"]
    assert check["test"] and check.get("interval")


@pytest.mark.parametrize("name", sorted(PROJECT_SERVICES))
def test_project_services_wait_for_healthy_dependencies(name: str) -> None:
    depends = COMPOSE["services"][name]["depends_on"]
    assert depends and all(
        cond["condition"] in {"service_healthy", "service_completed_successfully"} for cond in depends.values()
    )
    assert set(depends) <= set(COMPOSE["services"])


def test_no_secret_is_committed() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "funnelstream-dev-secret" not in text
    minio_env = COMPOSE["services"]["minio"]["environment"]
    assert all(str(value).startswith("${") for value in minio_env.values())
    for name in PROJECT_SERVICES:
        assert ".env" in str(COMPOSE["services"][name].get("env_file"))


def test_every_variable_is_one_a_settings_class_reads() -> None:
    read = variables_read()
    for name in PROJECT_SERVICES | {"heartbeat"}:
        environment = COMPOSE["services"][name]["environment"]
        unread = {key for key in environment if key.startswith("FS_")} - read
        assert not unread, f"{name} sets {sorted(unread)}, which no settings class reads"
    assert COMPOSE["secrets"]["warehouse_read_key"]["environment"] in read


def test_the_stream_state_lives_on_its_volume() -> None:
    service = COMPOSE["services"]["stream-processor"]
    data_dir = service["environment"]["FS_PATHS__DATA_DIR"]
    assert any(volume.split(":")[1] == data_dir for volume in service["volumes"])


def test_published_ports_are_declared() -> None:
    assert COMPOSE["services"]["ingest"]["ports"]
    assert COMPOSE["services"]["warehouse"]["ports"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")
def test_docker_compose_config_accepts_the_file() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"docker compose plugin unavailable: {probe.stderr.strip()[:200]}")
    env = ROOT / ".env.example"
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(env), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
