"""Who may send: write keys per source, their browser origins, and their rate."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ingest.errors import OriginRefused, RateLimited, Unauthorized
from ingest.settings import SourceConfig


@dataclass(slots=True)
class TokenBucket:
    """Allows ``rate`` events per second on average and ``burst`` at once."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.updated = self.clock()

    def take(self, count: int) -> float:
        """Take ``count`` tokens; returns 0 when granted, else the seconds until they would be there.

        A request larger than the whole bucket costs the whole bucket, so it can still pass when the
        bucket is full instead of never.
        """
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        cost = min(float(count), self.burst)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    cors_origins: frozenset[str]
    any_origin: bool

    def allows_origin(self, origin: str | None) -> bool:
        # Server-side senders send no Origin; CORS only concerns browsers.
        return origin is None or self.any_origin or origin in self.cors_origins


class AccessControl:
    def __init__(self, sources: Mapping[str, SourceConfig], clock: Callable[[], float] = time.monotonic) -> None:
        self._by_hash: dict[str, tuple[Source, TokenBucket]] = {}
        origins: set[str] = set()
        self.any_origin = False
        for name, config in sources.items():
            source = Source(name, frozenset(config.cors_origins), "*" in config.cors_origins)
            origins |= source.cors_origins
            self.any_origin = self.any_origin or source.any_origin
            for digest in config.write_key_sha256:
                # One bucket per key, as documented: rotating keys share nothing.
                self._by_hash[digest] = (source, TokenBucket(config.rate_per_s, float(config.burst), clock))
        self.known_origins = frozenset(origins)

    def is_known_origin(self, origin: str) -> bool:
        """Whether any source accepts this origin; used for preflights, which carry no key."""
        return self.any_origin or origin in self.known_origins

    def authenticate(self, write_key: str | None) -> tuple[Source, TokenBucket]:
        if not write_key:
            raise Unauthorized("missing write key: send the X-Write-Key header or a writeKey field")
        entry = self._by_hash.get(hashlib.sha256(write_key.encode()).hexdigest())
        if entry is None:
            raise Unauthorized("unknown write key")
        return entry

    def knows(self, write_key: str | None) -> bool:
        """Whether the key is one of ours; lets a request skip work that only a known sender gets."""
        if not write_key:
            return False
        return hashlib.sha256(write_key.encode()).hexdigest() in self._by_hash

    def admit(self, write_key: str | None, origin: str | None, event_count: int) -> Source:
        """Authenticate, check the browser origin, then charge the key's bucket; raises on refusal."""
        source, bucket = self.authenticate(write_key)
        if not source.allows_origin(origin):
            raise OriginRefused(f"origin {origin!r} is not allowed for source {source.name!r}")
        wait_s = bucket.take(event_count)
        if wait_s > 0:
            raise RateLimited(f"rate limit of source {source.name!r} exceeded", retry_after_s=math.ceil(wait_s))
        return source
