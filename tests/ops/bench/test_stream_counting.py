"""``make bench-stream``'s arithmetic: the rows a record holds (blocks split, plain records one),
the worker's rate over its output's broker timestamps, and the mix of the input records."""

from __future__ import annotations

import pytest

from funnelstream.blocks import BLOCK_HEADERS, Block, join_documents
from ops.bench.stream import block_mix, record_rows, rows_per_s


def test_a_block_counts_its_rows_and_a_plain_record_one() -> None:
    block = join_documents([b'{"a":1}', b'{"a":2}', b'{"a":3}'])
    assert record_rows(BLOCK_HEADERS, block) == 3
    # Faust hands headers as a mapping; the count must not depend on the client.
    assert record_rows(dict(BLOCK_HEADERS), block) == 3
    assert record_rows(None, b'{"a":1}') == 1
    assert record_rows([], b'{"a":1}') == 1
    # Without the header a record is one document, whatever its bytes hold.
    assert record_rows([("other", b"x")], block) == 1


def test_the_rate_counts_the_rows_made_within_the_span_of_the_stamps() -> None:
    # The first record's 500 rows were made before the first stamp: they are not in the span.
    records = [(1_000, 500), (2_000, 500), (3_000, 1_000)]
    assert rows_per_s(records) == 750
    # Order of arrival does not matter, only the stamps.
    assert rows_per_s(list(reversed(records))) == 750
    # Single-row records: n - 1 rows over the span, as a fence count.
    assert rows_per_s([(0, 1), (500, 1), (1_000, 1)]) == 2


def test_a_rate_without_a_span_is_refused_not_made_up() -> None:
    with pytest.raises(ValueError):
        rows_per_s([])
    with pytest.raises(ValueError):
        rows_per_s([(5, 100), (5, 200)])


def test_the_mix_tells_tracker_blocks_from_sdk_sized_ones() -> None:
    blocks = [
        Block(0, b"d1", b"", 5),
        Block(1, b"d2", b"", 20),
        Block(2, None, b"", 125),
        Block(3, None, b"", 50),
    ]
    mix = block_mix(blocks)
    assert mix["records"] == 4
    assert mix["events"] == 200
    assert mix["events_per_record_median"] == 35
    assert mix["events_per_record_mean"] == 50
    # A 20-event block may be a tracker's full request; only larger ones are SDK-sized.
    assert mix["sdk_sized_event_share"] == round(175 / 200, 3)
