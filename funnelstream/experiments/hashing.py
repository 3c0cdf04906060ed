"""GrowthBook-compatible bucketing: FNV-1a 32-bit hashing, variant ranges, namespaces.

Bucketing must agree byte for byte with GrowthBook's SDKs so that a frontend running a GrowthBook
SDK and the collector put the same unit in the same arm; the SDKs' published test cases are checked
in tests/funnelstream/experiments/data/growthbook_cases.json.
"""

from __future__ import annotations

from collections.abc import Sequence

FNV32_OFFSET_BASIS = 0x811C9DC5
FNV32_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF
# GrowthBook falls back to equal weights when the configured ones are this far from summing to 1.
WEIGHT_SUM_TOLERANCE = 0.01


def fnv1a32(text: str) -> int:
    # GrowthBook hashes UTF-16 code units (JavaScript charCodeAt); identical for the BMP.
    value = FNV32_OFFSET_BASIS
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        value ^= data[i] | (data[i + 1] << 8)
        value = (value * FNV32_PRIME) & _MASK32
    return value


def gb_hash(seed: str, value: str, version: int) -> float | None:
    """Map ``seed`` + ``value`` into [0, 1). ``None`` for an unknown hash version, as in the SDKs."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10_000) / 10_000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def equal_weights(count: int) -> list[float]:
    return [1.0 / count] * count if count > 0 else []


def bucket_ranges(count: int, coverage: float, weights: Sequence[float] | None = None) -> list[tuple[float, float]]:
    """One [start, end) range per variant.

    Each range starts at the cumulative weight of the variants before it, whatever the coverage,
    so raising coverage only adds units to an arm and never moves one from an arm to another.
    """
    coverage = min(max(coverage, 0.0), 1.0)
    if weights is None or len(weights) != count or abs(sum(weights) - 1.0) > WEIGHT_SUM_TOLERANCE:
        weights = equal_weights(count)
    ranges = []
    cumulative = 0.0
    for weight in weights:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variation(bucket: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the range holding ``bucket``; -1 when it falls in none (outside coverage)."""
    for index, (start, end) in enumerate(ranges):
        if start <= bucket < end:
            return index
    return -1


def in_namespace(unit_id: str, namespace: tuple[str, float, float]) -> bool:
    """Experiments sharing a namespace with disjoint ranges never share a unit."""
    name, start, end = namespace
    bucket = gb_hash("__" + name, unit_id, 1)
    return bucket is not None and start <= bucket < end
