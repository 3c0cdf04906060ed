"""Settings of the warehouse process: loader, query API and reports."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import BaseModel, Field, SecretStr, StringConstraints, model_validator

from funnelstream.errors import ConfigurationError
from funnelstream.settings import ServiceSettings
from funnelstream.topics import GroupName, Topic, TopicName

if TYPE_CHECKING:
    from funnelstream.serving import ConnectionLimits

DEV_READ_KEY = "fs-dev-read-key"
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def hash_read_key(read_key: str) -> str:
    """Read keys are stored as their SHA-256, so a leaked configuration leaks no key."""
    return hashlib.sha256(read_key.encode()).hexdigest()


def read_key_headers(read_key: str) -> dict[str, str]:
    """What a reader of the query API sends with every request."""
    return {"Authorization": f"Bearer {read_key}"}


class WarehouseConfig(BaseModel):
    """The query API (``warehouse serve``): ``FS_WAREHOUSE__*``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=1, le=65535)
    api_url: str | None = None
    """Where readers find ``warehouse serve``; unset: http://{host}:{port}."""
    read_key_sha256: list[Sha256Hex] = Field(default_factory=lambda: [hash_read_key(DEV_READ_KEY)], min_length=1)
    """SHA-256 digests of the read keys the query API accepts (JSON list); several let a key rotate.
    The default accepts the public dev key, which is refused with FS_ENVIRONMENT=prod."""
    read_key: SecretStr = SecretStr(DEV_READ_KEY)
    """The read key this process sends when it reads through the query API (reports, QA, load)."""
    max_body_bytes: int = Field(default=262_144, ge=1024)
    """Most a request body to the query API may hold; larger bodies get 413 after this much is read."""
    auth_failures_burst: int = Field(default=10, ge=1)
    """Wrong read keys one client address may send at once before it is answered 429."""
    auth_failures_per_minute: float = Field(default=12.0, gt=0)
    """How fast an address earns back a wrong-key attempt."""
    auth_clients_tracked: int = Field(default=10_000, ge=1)
    """Client addresses the wrong-key throttle remembers; the least recently refused go first."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds a connection has to send a request's line and headers, from its first byte (or from
    being opened): past them it gets 408 and is closed, so a slow sender holds no connection."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds a request's body has to arrive after its headers; past them, 408 and closed."""
    max_header_bytes: int = Field(default=16_384, ge=1024)
    """Most bytes of request line and headers; a larger head gets 431 and the connection is closed."""
    max_header_count: int = Field(default=64, ge=8)
    """Most headers of one request; more get 431 and the connection is closed."""
    keep_alive_timeout_s: int = Field(default=5, ge=1)
    """Seconds an idle keep-alive connection stays open."""
    run_loader: bool = True
    """``warehouse serve`` runs the loader too; turn off when loaders run apart (server mode)."""


class LoaderConfig(BaseModel):
    """The Kafka → ClickHouse loader: ``FS_LOADER__*``."""

    group_id: GroupName = "funnelstream-warehouse-loader"
    batch_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    batch_seconds: float = Field(default=1.0, gt=0, le=60)
    events_topic: TopicName = str(Topic.EVENTS_ENRICHED)
    sessions_topic: TopicName = str(Topic.SESSIONS)
    dlq_topic: TopicName = str(Topic.EVENTS_DLQ)
    tools_topic: TopicName = str(Topic.DIMENSIONS_TOOLS)
    inferences_topic: TopicName = str(Topic.DIMENSIONS_INFERENCES)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)

    @property
    def topics(self) -> list[str]:
        return [self.events_topic, self.sessions_topic, self.dlq_topic, self.tools_topic, self.inferences_topic]


class SqlLimits(BaseModel):
    """Limits of every client-reachable statement: ``FS_SQL__*``."""

    max_rows: int = Field(default=100_000, ge=1)
    """Rows one answer of POST /v1/sql or /v1/queries/{name} holds; more are cut (``truncated``)."""
    max_seconds: float = Field(default=30.0, gt=0)
    """Run time of one client-reachable statement (SQL, named, fixed routes); past it, a 400 naming it."""
    max_memory_bytes: int = Field(default=1 << 30, ge=1 << 20)
    """Memory of one analyst statement (ClickHouse's max_memory_usage); past it, a 400."""
    max_result_bytes: int = Field(default=256 << 20, ge=1 << 10)
    """Bytes of one answer as ClickHouse counts them; past it the answer is cut (a fixed route's: a 400)."""
    max_threads: int = Field(default=2, ge=1)
    """Threads one analyst statement may use; fewer than the cores, so ingestion keeps some."""
    max_concurrent: int = Field(default=4, ge=1)
    """Client-reachable statements at once (SQL, named queries, fixed routes); one more is answered 429."""


class WarehouseSettings(ServiceSettings):
    """Query API, loader and SQL limits; Kafka and ClickHouse sections come from ServiceSettings."""

    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    loader: LoaderConfig = Field(default_factory=LoaderConfig)
    sql: SqlLimits = Field(default_factory=SqlLimits)

    @model_validator(mode="after")
    def _no_dev_read_key_in_prod(self) -> Self:
        if self.environment == "prod" and hash_read_key(DEV_READ_KEY) in self.warehouse.read_key_sha256:
            raise ConfigurationError(
                "FS_WAREHOUSE__READ_KEY_SHA256 holds the public dev read key; set real key hashes in prod"
            )
        return self

    @property
    def connection_limits(self) -> ConnectionLimits:
        # uvicorn's protocol: only a server needs it
        from funnelstream.serving import ConnectionLimits  # noqa: PLC0415

        api = self.warehouse
        return ConnectionLimits(
            api.header_timeout_s,
            api.body_timeout_s,
            api.max_header_bytes,
            api.max_header_count,
            api.keep_alive_timeout_s,
        )

    @property
    def read_headers(self) -> dict[str, str]:
        return read_key_headers(self.warehouse.read_key.get_secret_value())

    @property
    def api_url(self) -> str:
        return self.warehouse.api_url or f"http://{self.warehouse.host}:{self.warehouse.port}"
