"""Who may send: write keys per source, their browser origins, and their rate.

Invariant: every event is charged to two token buckets, its key's and its client address's (per
source), so neither a leaked browser key nor one busy address can take a source's whole rate; a
request larger than a bucket's burst is refused as too large; an address that keeps presenting
unknown keys is refused with 429 before any more of its keys are hashed.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from funnelstream.ratelimit import BucketMap, FailedKeyThrottle, TokenBucket, address_bucket_name
from ingest.errors import OriginRefused, PayloadTooLarge, RateLimited, Unauthorized
from ingest.settings import ClientLimits, SourceConfig


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    cors_origins: frozenset[str]
    any_origin: bool

    def allows_origin(self, origin: str | None) -> bool:
        # Server-side senders send no Origin; CORS only concerns browsers.
        return origin is None or self.any_origin or origin in self.cors_origins


class AccessControl:
    def __init__(
        self,
        sources: Mapping[str, SourceConfig],
        limits: ClientLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limits = limits or ClientLimits()
        address_rate, address_burst = limits.address_bucket()
        self._by_hash: dict[str, tuple[Source, TokenBucket, BucketMap]] = {}
        origins: set[str] = set()
        self.any_origin = False
        for name, config in sources.items():
            source = Source(name, frozenset(config.cors_origins), "*" in config.cors_origins)
            origins |= source.cors_origins
            self.any_origin = self.any_origin or source.any_origin
            # One map of address buckets per source: all of its keys share it.
            by_address = BucketMap(
                config.address_rate_per_s or address_rate,
                float(config.address_burst or address_burst),
                limits.max_tracked_addresses,
                clock,
            )
            for digest in config.write_key_sha256:
                # One bucket per key, as documented: rotating keys share nothing.
                bucket = TokenBucket(config.rate_per_s, float(config.burst), clock)
                self._by_hash[digest] = (source, bucket, by_address)
        self.known_origins = frozenset(origins)
        self._unknown_keys = FailedKeyThrottle(
            limits.unknown_key_burst, limits.unknown_key_rate_per_s, limits.max_tracked_addresses, clock
        )

    def check_client(self, client: str | None) -> None:
        """Refuse an address that presented too many unknown keys, before hashing another."""
        if client is None:
            return
        wait_s = self._unknown_keys.wait_s(client)
        if wait_s:  # exactly 0.0 when it may; truth is cheaper than comparing a float to an int
            raise RateLimited("too many unknown write keys from this address", retry_after_s=max(1, math.ceil(wait_s)))

    def is_known_origin(self, origin: str) -> bool:
        """Whether any source accepts this origin; used for preflights, which carry no key."""
        return self.any_origin or origin in self.known_origins

    def authenticate(self, write_key: str | None, client: str | None = None) -> tuple[Source, TokenBucket, BucketMap]:
        if not write_key:
            raise Unauthorized("missing write key: send the X-Write-Key header or a writeKey field")
        self.check_client(client)
        entry = self._by_hash.get(hashlib.sha256(write_key.encode()).hexdigest())
        if entry is None:
            if client is not None:
                self._unknown_keys.charge(client)
            raise Unauthorized("unknown write key")
        return entry

    def knows(self, write_key: str | None) -> bool:
        """Whether the key is one of ours; lets a request skip work that only a known sender gets."""
        if not write_key:
            return False
        return hashlib.sha256(write_key.encode()).hexdigest() in self._by_hash

    def admit(self, write_key: str | None, origin: str | None, event_count: int, client: str | None = None) -> Source:
        """Authenticate, check the browser origin, then charge ``event_count`` to the client
        address's bucket and the key's; raises on refusal, having charged neither."""
        source, bucket, by_address = self.authenticate(write_key, client)
        if not source.allows_origin(origin):
            raise OriginRefused(f"origin {origin!r} is not allowed for source {source.name!r}")
        address_bucket = None if client is None else by_address.get(address_bucket_name(client))
        if address_bucket is not None:
            wait_s = address_bucket.take(event_count)
            if wait_s > 0:
                _refuse(event_count, wait_s, f"this address for source {source.name!r}", address_bucket.burst)
        wait_s = bucket.take(event_count)
        if wait_s > 0:
            if address_bucket is not None:
                address_bucket.give_back(event_count)
            _refuse(event_count, wait_s, f"source {source.name!r}", bucket.burst)
        return source


def _refuse(event_count: int, wait_s: float, whose: str, burst: float) -> None:
    if math.isinf(wait_s):
        # Waiting would not help: the bucket never holds this many.
        raise PayloadTooLarge(f"{event_count} events in one request; the burst of {whose} is {int(burst)}")
    raise RateLimited(f"rate limit of {whose} exceeded", retry_after_s=math.ceil(wait_s))
