"""Token buckets per client address, in bounded maps: the rate limits a service puts on its clients.

Owns what a client address is limited as (:func:`address_bucket_name`: an IPv4 address, also when
reported IPv4-mapped; an IPv6 /64), the bucket, the bounded map of buckets, and the throttle of failed
keys per address in front of key checks. Invariant: a map never holds more than its size of buckets;
the least recently used address goes first and comes back with a full bucket.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache


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

    def __init__(self, rate: float, burst: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
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


class FailedKeyThrottle(BucketMap):
    """Failed keys (unknown or wrong) per client address: ``burst`` at once, then ``rate_per_s``.

    Only failures are charged, so a right key never costs anything; a caller refuses an address
    whose :meth:`wait_s` is over 0 before it looks at that address's key, so guessing gets no
    faster by being right. Addresses are counted by :func:`address_bucket_name`. A map itself
    rather than holding one: :meth:`wait_s` runs on every request, one call deep.
    """

    def __init__(
        self, burst: int, rate_per_s: float, max_addresses: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(rate_per_s, float(burst), max_addresses, clock)

    def wait_s(self, address: str) -> float:
        """0 when the address may present a key; else the seconds until it may."""
        bucket = self._buckets.get(address_bucket_name(address))
        return 0.0 if bucket is None else bucket.wait_s()

    def charge(self, address: str) -> None:
        """Count one failed key against the address."""
        self.get(address_bucket_name(address)).take(1)
