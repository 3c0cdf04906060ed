from __future__ import annotations

import math

import pytest

from ingest.access import AccessControl, TokenBucket
from ingest.errors import OriginRefused, PayloadTooLarge, RateLimited, Unauthorized
from ingest.settings import ClientLimits, SourceConfig, hash_write_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate_and_caps_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert bucket.take(20) == 0
    assert bucket.take(5) == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take(5) == 0
    clock.now += 1000
    assert bucket.take(20) == 0
    assert bucket.take(1) > 0


def test_a_request_larger_than_the_burst_never_passes_and_costs_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=3, clock=FakeClock())
    assert bucket.take(500) == math.inf
    assert bucket.take(3) == 0
    assert bucket.take(1) == pytest.approx(1.0)


def _limited_access(clock: FakeClock) -> AccessControl:
    return AccessControl(
        {
            "web": SourceConfig(write_key_sha256=[hash_write_key("k1")], rate_per_s=1000, burst=1000),
            "backend": SourceConfig(
                write_key_sha256=[hash_write_key("k2")], rate_per_s=1000, burst=1000, address_burst=50
            ),
        },
        ClientLimits(address_rate_per_s=10, address_burst=20, unknown_key_burst=3, unknown_key_rate_per_s=0.5),
        clock=clock,
    )


def test_events_are_charged_per_client_address_as_well_as_per_key() -> None:
    clock = FakeClock()
    access = _limited_access(clock)
    access.admit("k1", None, 20, client="198.51.100.7")
    with pytest.raises(RateLimited, match="this address") as limited:
        access.admit("k1", None, 5, client="198.51.100.7")
    assert limited.value.retry_after_s == 1
    # Another address has its own bucket; the key's bucket was charged only for what passed.
    access.admit("k1", None, 20, client="198.51.100.8")
    # An IPv6 client is limited by its /64: cycling its own addresses gains nothing.
    access.admit("k1", None, 20, client="2001:db8:1:2::1")
    with pytest.raises(RateLimited):
        access.admit("k1", None, 1, client="2001:db8:1:2::ffff")
    # An IPv4 client reported IPv4-mapped by a dual-stack socket is itself, not one shared /64.
    access.admit("k1", None, 20, client="::ffff:198.51.100.10")
    access.admit("k1", None, 20, client="::ffff:198.51.100.11")
    with pytest.raises(RateLimited):
        access.admit("k1", None, 1, client="198.51.100.10")
    # A source may set its own per-address burst; more than any burst is refused as too large.
    access.admit("k2", None, 50, client="198.51.100.7")
    with pytest.raises(PayloadTooLarge, match="burst"):
        access.admit("k1", None, 21, client="198.51.100.9")
    clock.now += 2
    access.admit("k1", None, 20, client="198.51.100.7")


def test_an_address_presenting_unknown_keys_is_refused_before_its_keys_are_hashed() -> None:
    clock = FakeClock()
    access = _limited_access(clock)
    for guess in range(3):
        with pytest.raises(Unauthorized):
            access.admit(f"guess-{guess}", None, 1, client="203.0.113.5")
    with pytest.raises(RateLimited, match="unknown write keys") as limited:
        access.admit("k1", None, 1, client="203.0.113.5")
    assert limited.value.retry_after_s == 2
    access.admit("k1", None, 1, client="203.0.113.6")
    clock.now += 2
    assert access.admit("k1", None, 1, client="203.0.113.5").name == "web"


def test_keys_are_matched_by_hash_and_origins_per_source() -> None:
    clock = FakeClock()
    access = AccessControl(
        {
            "web": SourceConfig(
                write_key_sha256=[hash_write_key("k1"), hash_write_key("k1-next")], cors_origins=["https://a.example"]
            ),
            "backend": SourceConfig(write_key_sha256=[hash_write_key("k2")], rate_per_s=1, burst=1),
        },
        clock=clock,
    )
    assert access.admit("k1", "https://a.example", 1).name == "web"
    assert access.admit("k1-next", None, 1).name == "web"
    assert access.admit("k2", None, 1).name == "backend"
    with pytest.raises(Unauthorized):
        access.admit(None, None, 1)
    with pytest.raises(Unauthorized):
        access.admit(hash_write_key("k1"), None, 1)  # the stored hash is not a key
    with pytest.raises(OriginRefused):
        access.admit("k2", "https://a.example", 1)
    with pytest.raises(RateLimited) as limited:
        access.admit("k2", None, 1)
    assert limited.value.retry_after_s == 1
    assert access.is_known_origin("https://a.example") and not access.is_known_origin("https://b.example")


def test_source_config_refuses_a_plain_key_where_a_hash_belongs() -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        SourceConfig(write_key_sha256=["my-secret-key"])
