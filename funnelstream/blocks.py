"""Blocks: several JSON documents in one Kafka record, one document per line.

Owns the framing that ``events.raw`` and ``events.enriched`` share: the collector writes one block
of events per target partition of a request, the stream worker one block of rows per block it
read. Owns the header that marks a block of events the collector validated and stamped, and the
partition a device's events go to. Invariants: orjson never writes a raw newline inside a
document, so a block splits back into exactly its documents; a device's events all go to one
partition, in the order they were accepted; a record without the header holds one document.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

BLOCK_HEADER: Final = "fs-block"
"""Present on a block of events written by the collector; its value is the framing's version."""
BLOCK_VERSION: Final = b"1"
BLOCK_HEADERS: Final[list[tuple[str, str | bytes | None]]] = [(BLOCK_HEADER, BLOCK_VERSION)]
SEPARATOR: Final = b"\n"
BLOCK_MAX_BYTES: Final = 900_000
"""Under librdkafka's ``message.max.bytes`` (1,000,000) and the broker's default record limit; a
request's events for one partition that do not fit go out as several blocks, in order."""


def partition_for(key: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``) gives a non-empty
    key: CRC-32 of the key modulo the partition count. The collector chooses the partition itself
    so that it can group a request's events per partition, and still agrees with every producer
    that lets the partitioner choose (the inference service, the heartbeat, older collectors)."""
    return zlib.crc32(key) % partitions


@dataclass(frozen=True, slots=True)
class Block:
    partition: int
    key: bytes | None
    """The device when every document of the block is one device's, else None."""
    value: bytes
    count: int
    """Documents in the block."""


def blocks_by_partition(
    documents: Iterable[tuple[bytes, bytes]], partitions: int, max_bytes: int = BLOCK_MAX_BYTES
) -> list[Block]:
    """``(key, document)`` pairs as blocks: one per partition, in the order of first appearance,
    each keeping its documents' order, cut in several where it would pass ``max_bytes`` (a
    document larger than that gets a block of its own)."""
    groups: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, document in documents:
        partition = partition_for(key, partitions)
        group = groups.get(partition)
        if group is None:
            groups[partition] = [(key, document)]
        else:
            group.append((key, document))
    blocks: list[Block] = []
    for partition, group in groups.items():
        start = 0
        size = 0
        for index, (_, document) in enumerate(group):
            if index > start and size + len(SEPARATOR) + len(document) > max_bytes:
                blocks.append(_block(partition, group[start:index]))
                start, size = index, 0
            size += len(document) + (len(SEPARATOR) if index > start else 0)
        blocks.append(_block(partition, group[start:]))
    return blocks


def _block(partition: int, group: Sequence[tuple[bytes, bytes]]) -> Block:
    first_key = group[0][0]
    key = first_key if all(key == first_key for key, _ in group) else None
    return Block(partition, key, SEPARATOR.join(document for _, document in group), len(group))


def join_documents(documents: Sequence[bytes]) -> bytes:
    return SEPARATOR.join(documents)


def split_block(value: bytes) -> list[bytes]:
    """The documents of a block; a record without the framing is a block of one."""
    return value.split(SEPARATOR)


def block_version(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> bytes | None:
    """The framing version a record's headers name, None for a record without the header. Takes
    confluent-kafka's list of pairs and Faust's mapping or list alike."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == BLOCK_HEADER:
            return value if isinstance(value, bytes) else str(value).encode()
    return None
