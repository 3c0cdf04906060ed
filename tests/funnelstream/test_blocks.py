"""Blocks: the framing of several documents per Kafka record."""

from __future__ import annotations

import zlib

import orjson

from funnelstream.blocks import (
    BLOCK_HEADER,
    BLOCK_HEADERS,
    Block,
    block_version,
    blocks_by_partition,
    partition_for,
    split_block,
)


def _doc(device: str, n: int, pad: int = 0) -> tuple[bytes, bytes]:
    return device.encode(), orjson.dumps({"anonymous_id": device, "n": n, "text": "line\nbreak", "pad": "x" * pad})


def test_a_device_keeps_its_partition_and_order_and_every_document_comes_back() -> None:
    documents = [_doc(f"d{i % 7}", i) for i in range(60)]
    blocks = blocks_by_partition(documents, partitions=4)
    assert sum(block.count for block in blocks) == 60
    back = [orjson.loads(line) for block in blocks for line in split_block(block.value)]
    assert sorted(item["n"] for item in back) == list(range(60))
    for block in blocks:
        devices = {orjson.loads(line)["anonymous_id"] for line in split_block(block.value)}
        assert all(partition_for(device.encode(), 4) == block.partition for device in devices)
    for device in {f"d{i % 7}" for i in range(60)}:
        seen = [item["n"] for item in back if item["anonymous_id"] == device]
        assert seen == sorted(seen)
    assert len({block.partition for block in blocks}) == len(blocks)


def test_the_partition_is_the_default_partitioners_crc32() -> None:
    assert partition_for(b"device-1", 6) == zlib.crc32(b"device-1") % 6


def test_a_block_is_keyed_by_its_device_only_when_it_has_one() -> None:
    (alone,) = blocks_by_partition([_doc("a", 1), _doc("a", 2)], partitions=1)
    assert alone.key == b"a"
    (mixed,) = blocks_by_partition([_doc("a", 1), _doc("b", 2)], partitions=1)
    assert mixed.key is None


def test_a_partitions_documents_past_the_size_limit_go_out_as_several_blocks_in_order() -> None:
    documents = [_doc("a", i, pad=300) for i in range(10)]
    blocks = blocks_by_partition(documents, partitions=1, max_bytes=1000)
    assert len(blocks) > 1
    assert all(len(block.value) <= 1000 for block in blocks)
    assert [orjson.loads(line)["n"] for block in blocks for line in split_block(block.value)] == list(range(10))
    key, large = _doc("a", 0, pad=5000)
    assert blocks_by_partition([(key, large)], partitions=1, max_bytes=1000) == [Block(0, b"a", large, 1)]


def test_the_header_is_read_from_either_client_shape() -> None:
    assert block_version(BLOCK_HEADERS) == b"1"
    assert block_version({BLOCK_HEADER: b"1"}) == b"1"
    assert block_version([("other", b"x")]) is None
    assert block_version(None) is None
