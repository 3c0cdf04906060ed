"""Settings of the collector: one class, read from the environment (``FS_INGEST__...``)."""

from __future__ import annotations

import hashlib
from typing import Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from funnelstream.errors import ConfigurationError
from funnelstream.experiments.settings import ExperimentsConfig
from funnelstream.settings import ServiceSettings
from funnelstream.topics import Topic, TopicName

DEV_WRITE_KEY = "fs-dev-write-key"
DEV_READ_KEY = "fs-dev-read-key"
DEV_SOURCE = "dev"
DEV_UPLOAD_TOKEN_SECRET = "fs-dev-upload-token-secret"  # noqa: S105 -- refused in prod by IngestSettings
DEV_SERVER_WRITE_KEY = "fs-dev-server-key"
"""Local key of a server-side sender (the demo's simulated backend), which may bind user ids."""
DEV_SERVER_SOURCE = "dev-server"


def hash_write_key(write_key: str) -> str:
    """Write keys are stored as their SHA-256, so a leaked configuration leaks no key."""
    return hashlib.sha256(write_key.encode()).hexdigest()


class SourceConfig(BaseModel):
    """One sender (a frontend, a backend): its keys, the browser origins it may post from, its rate."""

    write_key_sha256: list[str] = Field(min_length=1)
    """Several hashes let a key be rotated without downtime."""
    cors_origins: list[str] = Field(default_factory=list)
    """Exact origins (``https://edit.example.com``); ``*`` allows any. Requests without Origin pass."""
    rate_per_s: float = Field(default=2_000.0, gt=0)
    """Events per second refilled into this source's token bucket."""
    burst: int = Field(default=10_000, ge=1)
    """At least ``max_batch_events``: a request of more events than the burst can never pass."""
    address_rate_per_s: float | None = Field(default=None, gt=0)
    """Events per second one client address may send with this source's keys; unset: the
    collector's ``clients.address_rate_per_s``."""
    address_burst: int | None = Field(default=None, ge=1)
    may_bind_user_id: bool = False
    """Whether this source's requests may bind a ``user_id`` to a device's experiment arms
    (``GET /v1/assignments?user_id=``), which then holds on every device of that user. True only
    for sources whose keys live on servers that authenticated the user: a key shipped to browsers
    is public, and with it anyone could pin another person's arm. Refused with 403 otherwise."""

    @field_validator("write_key_sha256")
    @classmethod
    def _hex_digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError("write_key_sha256: each entry must be a lowercase hex SHA-256 digest")
        return value


def _dev_sources() -> dict[str, SourceConfig]:
    return {
        DEV_SOURCE: SourceConfig(
            write_key_sha256=[hash_write_key(DEV_WRITE_KEY)],
            cors_origins=["http://localhost:3000", "http://127.0.0.1:3000", "http://localhost:5173"],
            rate_per_s=1_000_000.0,
            burst=1_000_000,
        ),
        # The demo's server side binds its simulated users, as a site's backend would.
        DEV_SERVER_SOURCE: SourceConfig(
            write_key_sha256=[hash_write_key(DEV_SERVER_WRITE_KEY)],
            rate_per_s=1_000_000.0,
            burst=1_000_000,
            may_bind_user_id=True,
        ),
    }


class ClientLimits(BaseModel):
    """Limits per client address (an IPv4 address, an IPv6 /64). Unset rates take the
    environment's default: generous in dev and test, where load tools send from 127.0.0.1,
    conservative in prod."""

    address_rate_per_s: float | None = Field(default=None, gt=0)
    """Events per second one address may send to a source (dev 1,000,000; prod 100)."""
    address_burst: int | None = Field(default=None, ge=1)
    """Events one address may send at once (dev 1,000,000; prod 1,000)."""
    unknown_key_burst: int = Field(default=20, ge=1)
    """Unknown write keys an address may present before it is answered 429."""
    unknown_key_rate_per_s: float = Field(default=0.5, gt=0)
    """How fast an address earns back the right to present another unknown key."""
    max_tracked_addresses: int = Field(default=100_000, ge=100)
    """Addresses whose buckets are kept; the least recently seen are forgotten first."""

    def for_environment(self, environment: str) -> ClientLimits:
        rate, burst = self.address_bucket(environment)
        return self.model_copy(update={"address_rate_per_s": rate, "address_burst": burst})

    def address_bucket(self, environment: str = "dev") -> tuple[float, int]:
        """Rate and burst of an address's bucket, the environment's defaults for unset ones."""
        dev = environment != "prod"
        return (
            self.address_rate_per_s or (1_000_000.0 if dev else 100.0),
            self.address_burst or (1_000_000 if dev else 1_000),
        )


class IngestConfig(BaseModel):
    sources: dict[str, SourceConfig] = Field(default_factory=_dev_sources)
    """JSON in FS_INGEST__SOURCES; the default is the dev source with the public dev key."""
    max_batch_events: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_event_bytes: int = Field(default=32_768, ge=256)
    clients: ClientLimits = Field(default_factory=ClientLimits)
    """Rate limits per client address and of unknown keys (``FS_INGEST__CLIENTS__...``)."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A connection must deliver a request's line and headers within this, from its first byte
    (or from being opened), else it is answered 408 and closed: a slow sender holds nothing."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """A request's body must arrive within this after its headers, else 408 and closed."""
    max_header_bytes: int = Field(default=16_384, ge=1024)
    """Request line and headers together; more is answered 431 and the connection closed."""
    max_header_count: int = Field(default=64, ge=8)
    """Headers in one request; more is answered 431 and the connection closed."""
    keep_alive_timeout_s: int = Field(default=5, ge=1)
    """An idle keep-alive connection is closed after this."""
    public_origins: list[str] = Field(default_factory=list)
    """Origins (``https://collect.example.com``) under which browsers reach this collector: pages
    served by it there (the demo) post as same-origin. The address a request arrived on counts too;
    the client's Host header never does."""
    read_key_sha256: list[str] = Field(default_factory=lambda: [hash_write_key(DEV_READ_KEY)])
    """Hashes of read keys (``Authorization: Bearer``) for /metrics, /docs and /openapi.json,
    which in prod need one; in dev and test they are open. The default is the public dev key."""
    delivery_timeout_s: float = Field(default=5.0, gt=0)
    """How long the broker may be away before a request is answered 503 (librdkafka message timeout)."""
    producer_queue_max_messages: int = Field(default=200_000, ge=1_000)
    """Records waiting for the broker, past which a request is answered 503: a request's events
    are one record per partition they go to (one per event while the partition count is unknown)."""
    linger_ms: float = Field(default=0.5, ge=0)
    """How long the producer waits to fill a batch. Every request waits for its events' batch, so
    this adds to each answer's latency; a 500-event request fills its batches at once anyway."""
    retry_after_s: int = Field(default=2, ge=1)
    late_limit_s: float = Field(default=7 * 24 * 3600, gt=0)
    future_tolerance_s: float = Field(default=5.0, ge=0)
    trust_forwarded_for: bool = False
    """Take the client IP from X-Forwarded-For; only behind a proxy that sets it."""
    ipv4_prefix: int = Field(default=24, ge=0, le=32)
    ipv6_prefix: int = Field(default=48, ge=0, le=128)
    upload_url_ttl_s: int = Field(default=300, ge=60, le=7 * 24 * 3600)
    """Lifetime of an upload's POST policy; within it the same key can be posted to again."""
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    """Largest image an upload's POST policy admits (its content-length-range)."""
    max_job_body_bytes: int = Field(default=32_768, ge=1024, le=1_048_576)
    """Body limit of POST /v1/uploads and /v1/jobs, read only after the write key is admitted."""
    upload_token_secret: SecretStr = SecretStr(DEV_UPLOAD_TOKEN_SECRET)
    """Key of the HMAC that binds an upload to its device; every collector instance needs the same."""
    result_url_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    results_consumer: bool = True
    """Follow inference.results so GET /v1/jobs/{job_id} can answer; off only in tests."""
    results_cache_size: int = Field(default=50_000, ge=1)
    results_lookback_s: int = Field(default=24 * 3600, ge=0)
    readiness_timeout_s: float = Field(default=1.0, gt=0)
    events_topic: TopicName = str(Topic.EVENTS_RAW)
    dlq_topic: TopicName = str(Topic.EVENTS_DLQ)
    jobs_topic: TopicName = str(Topic.INFERENCE_JOBS)
    results_topic: TopicName = str(Topic.INFERENCE_RESULTS)
    experiments_enabled: bool = True
    """Serve GET /v1/assignments from the experiment definitions (FS_EXPERIMENTS__*)."""
    demo_page: bool = True
    """Serve the editing demo at /demo and the browser tracker at /tracker.js."""
    demo_write_key: str = DEV_WRITE_KEY
    """Write key the demo page sends with its events; a public value by nature."""

    @field_validator("read_key_sha256")
    @classmethod
    def _read_key_digests(cls, value: list[str]) -> list[str]:
        return SourceConfig._hex_digests(value)


class IngestSettings(ServiceSettings):
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    experiments: ExperimentsConfig = Field(default_factory=ExperimentsConfig)

    @model_validator(mode="after")
    def _limits_fit_a_batch(self) -> Self:
        ingest = self.ingest
        ingest.clients = ingest.clients.for_environment(self.environment)
        batch = ingest.max_batch_events
        for name, source in ingest.sources.items():
            address_burst = source.address_burst or ingest.clients.address_burst or 0
            for field, value in (("burst", source.burst), ("address_burst", address_burst)):
                if value < batch:
                    raise ConfigurationError(
                        f"FS_INGEST__SOURCES: source {name!r} has {field} {value}, under max_batch_events "
                        f"({batch}); a full batch could never pass"
                    )
        return self

    @model_validator(mode="after")
    def _no_dev_upload_secret_in_prod(self) -> Self:
        if self.environment == "prod" and self.ingest.upload_token_secret.get_secret_value() == DEV_UPLOAD_TOKEN_SECRET:
            raise ConfigurationError("FS_INGEST__UPLOAD_TOKEN_SECRET must be set in prod; the dev default is public")
        return self

    @model_validator(mode="after")
    def _no_dev_key_in_prod(self) -> Self:
        if self.environment != "prod":
            return self
        dev_hashes = {hash_write_key(DEV_WRITE_KEY), hash_write_key(DEV_SERVER_WRITE_KEY)}
        for name, source in self.ingest.sources.items():
            if dev_hashes & set(source.write_key_sha256):
                raise ConfigurationError(
                    f"FS_INGEST__SOURCES: source {name!r} uses the public dev write key; set real key hashes in prod"
                )
        if hash_write_key(DEV_READ_KEY) in self.ingest.read_key_sha256:
            raise ConfigurationError(
                "FS_INGEST__READ_KEY_SHA256: the public dev read key guards /metrics and /docs; set real key hashes"
            )
        return self
