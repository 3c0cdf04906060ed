"""Bucketing agrees with GrowthBook's published SDK test cases (data/growthbook_cases.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from funnelstream.experiments.hashing import bucket_ranges, choose_variation, fnv1a32, gb_hash, in_namespace
from ingest.experiments.assignment import hash_assignment
from tests.helpers.experiment_fixtures import make_experiment

CASES = json.loads((Path(__file__).parent / "data" / "growthbook_cases.json").read_text())


def test_fnv1a32_reference_vectors() -> None:
    # Published FNV-1a 32-bit test vectors.
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968


@pytest.mark.parametrize(("seed", "value", "version", "expected"), CASES["hash"] + CASES["bucket"])
def test_hash_matches_growthbook(seed: str, value: str, version: int, expected: float | None) -> None:
    assert gb_hash(seed, value, version) == expected


@pytest.mark.parametrize(
    ("name", "args", "expected"), CASES["getBucketRange"], ids=[c[0] for c in CASES["getBucketRange"]]
)
def test_bucket_ranges_match_growthbook(name: str, args: list[Any], expected: list[list[float]]) -> None:
    count, coverage, weights = args
    got = bucket_ranges(count, coverage, weights)
    flat = [bound for pair in got for bound in pair]
    assert flat == pytest.approx([bound for pair in expected for bound in pair], abs=1e-9)


@pytest.mark.parametrize(
    ("name", "bucket", "ranges", "expected"), CASES["chooseVariation"], ids=[c[0] for c in CASES["chooseVariation"]]
)
def test_choose_variation_matches_growthbook(
    name: str, bucket: float, ranges: list[list[float]], expected: int
) -> None:
    assert choose_variation(bucket, [(r[0], r[1]) for r in ranges]) == expected


@pytest.mark.parametrize(
    ("name", "unit", "namespace", "expected"), CASES["inNamespace"], ids=[c[0] for c in CASES["inNamespace"]]
)
def test_in_namespace_matches_growthbook(name: str, unit: str, namespace: list[Any], expected: bool) -> None:
    assert in_namespace(unit, (namespace[0], namespace[1], namespace[2])) is expected


def test_range_starts_stay_fixed_when_coverage_grows() -> None:
    low = bucket_ranges(3, 0.2, [0.2, 0.3, 0.5])
    high = bucket_ranges(3, 0.9, [0.2, 0.3, 0.5])
    assert [start for start, _ in low] == [start for start, _ in high]
    assert all(hi_end >= lo_end for (_, lo_end), (_, hi_end) in zip(low, high, strict=True))


def test_an_empty_seed_hashes_with_the_experiment_key_as_growthbook_does() -> None:
    # GrowthBook's SDKs hash with `seed || key`: an empty seed falls back to the key.
    key = "segmentation_tool"
    empty = make_experiment(seed="")
    assert empty.hash_seed == key
    ranges = bucket_ranges(2, 1.0, [0.5, 0.5])
    units = [f"device-{i}" for i in range(1000)]
    moved = 0
    for unit in units:
        by_key = gb_hash(key, unit, 2)
        by_empty = gb_hash("", unit, 2)
        assert by_key is not None and by_empty is not None
        expected = empty.variant_keys[choose_variation(by_key, ranges)]
        assert hash_assignment(empty, unit).variant == expected
        moved += choose_variation(by_empty, ranges) != choose_variation(by_key, ranges)
    # The case discriminates: hashing with "" would have put about half the devices in the other arm.
    assert moved > 400
    # The fallback does not change what "seed: null" and "seed: <key>" already meant.
    assert make_experiment(seed=None).allocation() == empty.allocation() == make_experiment(seed=key).allocation()
