"""``funnelstream status``: every stage's lag and health on one screen.

Per stage: the Kafka consumer-group lag of the stream processors, the loader and the inference
service (committed offsets against the partitions' end offsets), the end-to-end freshness from the
heartbeats in the warehouse, and each service's readiness endpoint.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from clickhouse.backend import Warehouse
from clickhouse.errors import QueryError, WarehouseUnavailable
from clickhouse.qa.remote import WarehouseApi
from clickhouse.qa.settings import QASettings
from clickhouse.queries import QUERIES_DIR
from clickhouse.settings import read_key_headers
from funnelstream.kafka import consumer_group_lag

log = logging.getLogger("ops.status")

WAREHOUSE_STAGE = "warehouse"
"""The readiness stage whose probe carries the warehouse's read key (its /readyz needs one)."""
UNKNOWN_TABLE = 60
"""ClickHouse's error code for a table that does not exist."""


class Health(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StageStatus:
    stage: str
    probe: str
    health: Health
    value: float | None
    unit: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Freshness:
    heartbeats: int
    age_s: float | None
    last_latency_s: float | None


FRESHNESS_QUERY = "qa_heartbeat_freshness"


def heartbeat_freshness(warehouse: Warehouse | WarehouseApi, now: datetime | None = None) -> Freshness:
    sql = (QUERIES_DIR / f"{FRESHNESS_QUERY}.sql").read_text()
    return _freshness_of(warehouse.query_rows(sql, {"now": now or datetime.now(UTC)})[0])


def _freshness_of(row: dict[str, object]) -> Freshness:
    heartbeats = int(str(row["heartbeats"]))
    if heartbeats == 0:
        return Freshness(0, None, None)
    return Freshness(heartbeats, float(str(row["age_s"])), float(str(row["last_latency_s"])))


def probe_ready(url: str, timeout_s: float, headers: Mapping[str, str] | None = None) -> tuple[Health, str]:
    try:
        response = httpx.get(url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Health.DOWN, f"{url}: {type(exc).__name__}"
    if response.status_code == 200:
        return Health.OK, url
    return Health.DOWN, f"{url}: HTTP {response.status_code} {response.text[:120]}"


def _lag_stages(settings: QASettings) -> Iterable[StageStatus]:
    for stage, group in settings.qa.consumer_groups.items():
        try:
            lag = consumer_group_lag(settings.kafka, group, timeout_s=settings.qa.probe_timeout_s * 2)
        except KafkaException as exc:
            yield StageStatus(stage, f"lag of {group}", Health.DOWN, None, "msgs", f"kafka: {exc}")
            continue
        if not lag.per_partition:
            yield StageStatus(stage, f"lag of {group}", Health.UNKNOWN, None, "msgs", "no committed offsets")
            continue
        health = Health.OK if lag.total <= settings.qa.lag_degraded else Health.DEGRADED
        topics = ", ".join(f"{topic} {value}" for topic, value in sorted(lag.by_topic().items()))
        yield StageStatus(stage, f"lag of {group}", health, float(lag.total), "msgs", topics)


WarehouseLease = Callable[[], AbstractContextManager[Warehouse]]
"""Gives the warehouse for one read and takes it back (closing it, or leaving a shared one open)."""


def read_freshness(
    settings: QASettings, lease: WarehouseLease, now: datetime, api_url: str | None, read_key: str
) -> Freshness:
    """Through ``warehouse serve`` when ``api_url`` answers (with ``read_key``), else through ``lease``."""
    if api_url:
        try:
            with closing(WarehouseApi(api_url, read_key=read_key, timeout_s=settings.qa.probe_timeout_s * 5)) as api:
                return heartbeat_freshness(api, now)
        except WarehouseUnavailable:
            log.debug("warehouse API unreachable; reading the warehouse directly", extra={"url": api_url})
    with lease() as warehouse:
        return heartbeat_freshness(warehouse, now)


def _freshness_stage(
    settings: QASettings, lease: WarehouseLease, now: datetime, api_url: str | None, read_key: str
) -> StageStatus:
    probe = "heartbeat freshness"
    try:
        freshness = read_freshness(settings, lease, now, api_url, read_key)
    except QueryError as exc:
        if exc.code == UNKNOWN_TABLE:
            detail = "the warehouse has no events table yet: run `funnelstream db migrate`"
        else:
            detail = f"query failed: {exc.message.splitlines()[0][:200]}"
        return StageStatus("end to end", probe, Health.UNKNOWN, None, "s", detail)
    except Exception as exc:  # the warehouse may be away, or owned by another process
        return StageStatus("end to end", probe, Health.UNKNOWN, None, "s", f"warehouse: {exc}"[:200])
    if freshness.age_s is None:
        return StageStatus("end to end", probe, Health.DOWN, None, "s", "no heartbeat in the last day")
    if freshness.age_s <= settings.qa.freshness_degraded_s:
        health = Health.OK
    elif freshness.age_s <= settings.qa.freshness_down_s:
        health = Health.DEGRADED
    else:
        health = Health.DOWN
    detail = f"last heartbeat took {freshness.last_latency_s:.1f} s to reach the warehouse"
    return StageStatus("end to end", probe, health, freshness.age_s, "s", detail)


def collect_status(
    settings: QASettings,
    lease: WarehouseLease,
    *,
    now: datetime | None = None,
    probe_services: bool = True,
    api_url: str | None = None,
    read_key: str = "",
) -> list[StageStatus]:
    """``api_url``: a running ``warehouse serve`` to read freshness through, tried before ``lease``.
    ``read_key``: the warehouse's read key, for that and for the warehouse stage's readiness probe."""
    stages: list[StageStatus] = []
    if probe_services:
        for stage, url in settings.qa.readiness_urls.items():
            # Only the warehouse is sent its key; no other service needs to see it.
            headers = read_key_headers(read_key) if stage == WAREHOUSE_STAGE and read_key else None
            health, detail = probe_ready(url, settings.qa.probe_timeout_s, headers)
            stages.append(StageStatus(stage, "ready", health, None, "", detail))
    stages.extend(_lag_stages(settings))
    stages.append(_freshness_stage(settings, lease, now or datetime.now(UTC), api_url, read_key))
    return stages


_HEALTH_STYLE = {Health.OK: "green", Health.DEGRADED: "yellow", Health.DOWN: "red", Health.UNKNOWN: "dim"}


def render_status(stages: list[StageStatus], console: Console) -> None:
    table = Table(title="Funnelstream pipeline status", title_justify="left")
    table.add_column("stage")
    table.add_column("probe")
    table.add_column("health")
    table.add_column("lag", justify="right")
    table.add_column("detail", overflow="fold")
    for stage in stages:
        style = _HEALTH_STYLE[stage.health]
        value = "-" if stage.value is None else (f"{stage.value:.1f} s" if stage.unit == "s" else f"{stage.value:.0f}")
        table.add_row(stage.stage, stage.probe, f"[{style}]{stage.health}[/{style}]", value, stage.detail)
    console.print(table)


def overall(stages: Iterable[StageStatus]) -> Health:
    healths = {stage.health for stage in stages}
    for health in (Health.DOWN, Health.DEGRADED, Health.UNKNOWN):
        if health in healths:
            return health
    return Health.OK
