"""The statement check in front of ``POST /v1/sql``; ClickHouse's ``readonly`` setting backs it up.

Only one SELECT (or WITH … SELECT), DESCRIBE, SHOW, EXPLAIN or EXISTS statement; no SETTINGS
clause, no FORMAT clause, no INTO OUTFILE, no table functions that reach files, URLs or other
servers.
"""

from __future__ import annotations

import re

from clickhouse.errors import ReadOnlyViolation

_READ_STATEMENTS = ("SELECT", "WITH", "DESCRIBE", "DESC", "SHOW", "EXPLAIN", "EXISTS")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_QUOTED_NAME = re.compile(r'`(?:[^`\\]|\\.)*`|"(?:[^"\\]|\\.)*"')
_WRITE_WORDS = re.compile(
    r"\b(INSERT|ALTER|CREATE|DROP|TRUNCATE|RENAME|ATTACH|DETACH|OPTIMIZE|GRANT|REVOKE|KILL|SYSTEM|"
    r"EXCHANGE|UNDROP|BACKUP|RESTORE)\b(?!\s*\.)",
    re.IGNORECASE,
)
_SETTINGS = re.compile(r"\bSETTINGS\b", re.IGNORECASE)
_OUTPUT = re.compile(r"\b(INTO\s+OUTFILE|FORMAT)\b", re.IGNORECASE)
_EXTERNAL = re.compile(
    r"\b(file|url|s3|s3Cluster|hdfs|remote|remoteSecure|cluster|clusterAllReplicas|mysql|postgresql|jdbc|odbc|"
    r"executable|input|azureBlobStorage|gcs|mongodb|redis|sqlite|deltaLake|iceberg|hudi)\s*\(",
    re.IGNORECASE,
)


def check_read_only(sql: str) -> str:
    """The statement without a trailing semicolon, or :class:`ReadOnlyViolation` saying why not."""
    stripped = _COMMENT.sub(" ", sql).strip()
    # Literal text and quoted names cannot make a statement write; blank them before looking.
    bare = _QUOTED_NAME.sub("``", _STRING.sub("''", stripped)).strip()
    if bare.endswith(";"):
        bare = bare[:-1].rstrip()
        stripped = stripped.rstrip()[:-1].rstrip()
    if not bare:
        raise ReadOnlyViolation("empty", "no statement given")
    if ";" in bare:
        raise ReadOnlyViolation("multiple statements", "send one statement per request")
    first = bare.split(None, 1)[0].upper()
    if first not in _READ_STATEMENTS:
        raise ReadOnlyViolation(first, "writes, DDL and session changes are not allowed here")
    write = _WRITE_WORDS.search(bare)
    if write:
        raise ReadOnlyViolation(write.group(1).upper(), "writes, DDL and session changes are not allowed here")
    if _SETTINGS.search(bare):
        raise ReadOnlyViolation("SETTINGS", "settings changes are not allowed; limits are set by the server")
    output = _OUTPUT.search(bare)
    if output:
        raise ReadOnlyViolation(output.group(1).upper(), "the response format is chosen with ?format=json|csv")
    external = _EXTERNAL.search(bare)
    if external:
        raise ReadOnlyViolation(f"{external.group(1)}()", "table functions that reach outside the warehouse")
    return stripped


def read_only_settings(max_rows: int, max_seconds: float) -> dict[str, object]:
    """ClickHouse's own guard: even a statement that slipped past the check cannot write."""
    return {
        "readonly": 1,
        "max_result_rows": max_rows + 1,
        "result_overflow_mode": "break",
        "max_execution_time": max_seconds,
    }
