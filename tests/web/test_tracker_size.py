"""The tracker stays small enough to load on every page: at most 5 KB gzipped, even unminified."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

TRACKER = Path(__file__).resolve().parents[2] / "ingest" / "static" / "tracker.js"


def test_tracker_is_at_most_5_kb_gzipped() -> None:
    size = len(gzip.compress(TRACKER.read_bytes(), compresslevel=9))
    assert size <= 5 * 1024, f"tracker.js is {size} bytes gzipped"


def test_tracker_has_no_runtime_dependencies() -> None:
    source = TRACKER.read_text()
    assert not re.search(r"\b(require|import)\s*\(", source)
    assert not re.search(r"^\s*import\s", source, re.MULTILINE)
