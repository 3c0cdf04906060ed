from __future__ import annotations

import pytest

from ingest.access import AccessControl, TokenBucket
from ingest.errors import OriginRefused, RateLimited, Unauthorized
from ingest.settings import SourceConfig, hash_write_key


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


def test_a_request_larger_than_the_burst_costs_the_whole_bucket() -> None:
    bucket = TokenBucket(rate=1, burst=3, clock=FakeClock())
    assert bucket.take(500) == 0
    assert bucket.take(1) == pytest.approx(1.0)


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
