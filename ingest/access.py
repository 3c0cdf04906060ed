"""Who may send: write keys per source, their browser origins, and their rate.

Every event is charged to two token buckets: its key's and its client address's (per source), so
neither a leaked browser key nor one busy address can take a source's whole rate. A request
larger than a bucket's burst can never pass and is refused as too large. A client address that
keeps presenting unknown keys is refused with 429 before any more of its keys are hashed. The
per-address maps are bounded: the least recently seen addresses are forgotten first.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from ingest.errors import OriginRefused, PayloadTooLarge, RateLimited, Unauthorized
from ingest.settings import ClientLimits, SourceConfig


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
        """Take ``count`` tokens; returns 0 when granted, else the seconds until they would be
        there (infinite for more than the whole bucket, which can never pass)."""
        if count > self.burst:
            return math.inf
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= count:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate

    def give_back(self, count: int) -> None:
        self.tokens = min(self.burst, self.tokens + count)

    def wait_s(self) -> float:
        """Seconds until one token is there; 0 when one is."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class BucketMap:
    """Token buckets by name (a client address), at most ``size`` of them, the least recently
    used forgotten first: a forgotten address starts again with a full bucket."""

    def __init__(self, rate: float, burst: float, size: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.size, self.clock = rate, burst, size, clock
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def get(self, name: object) -> TokenBucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(self.rate, self.burst, self.clock)
            if len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(name)
        return bucket

    def peek(self, name: object) -> TokenBucket | None:
        return self._buckets.get(name)

    def __len__(self) -> int:
        return len(self._buckets)


@lru_cache(maxsize=4096)
def address_bucket_name(address: str) -> str:
    """The unit an address is limited as: itself for IPv4 (also written IPv4-mapped, as a
    dual-stack socket reports it), its /64 for IPv6 (one subscriber's network, whose addresses a
    client can cycle through for free)."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network(f"{ip}/64", strict=False).network_address)


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
        self._unknown_keys = BucketMap(
            limits.unknown_key_rate_per_s, float(limits.unknown_key_burst), limits.max_tracked_addresses, clock
        )

    def check_client(self, client: str | None) -> None:
        """Refuse an address that presented too many unknown keys, before hashing another."""
        if client is None:
            return
        bucket = self._unknown_keys.peek(address_bucket_name(client))
        if bucket is not None:
            wait_s = bucket.wait_s()
            if wait_s > 0:
                raise RateLimited(
                    "too many unknown write keys from this address", retry_after_s=max(1, math.ceil(wait_s))
                )

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
                self._unknown_keys.get(address_bucket_name(client)).take(1)
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
