"""The one place that decides whether client SQL (``POST /v1/sql``) is one read statement.

ClickHouse's own parser decides, on the analyst's read-only checking session: ``formatQuerySingleLine``
renders the one statement (more than one is refused) and only that rendering runs; ``EXPLAIN AST`` of it
gives its kind, SETTINGS, INTO OUTFILE and functions. Invariant: what ``check_read_only`` returns is a
SELECT, DESCRIBE, SHOW, EXISTS or EXPLAIN of one of those, without SETTINGS, FORMAT or INTO OUTFILE,
calling no table function outside ``SAFE_TABLE_FUNCTIONS`` and no function that reads the server's files.
"""

from __future__ import annotations

import re

from clickhouse.backend import AnalystSession, Parameters
from clickhouse.errors import QueryError, ReadOnlyViolation

_READ_ROOTS = frozenset({"SelectWithUnionQuery", "SelectQuery", "DescribeQuery", "Explain"})
_READ_ROOT_PREFIXES = ("Show", "Exists")
SAFE_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "generate_series", "generateseries", "generaterandom", "values", "view", "merge"}
)
"""Table functions that make rows or read the warehouse's own tables; every other one is refused
(files, URLs, object stores, other servers, processes, and those not known yet)."""
FORBIDDEN_FUNCTIONS = frozenset({"file"})
"""Ordinary functions that reach outside: ``file()`` reads a server file even with ``readonly=1``."""
_READONLY = 164
_UNKNOWN_SETTING = 115
_WRITES = "writes, DDL and session changes are not allowed here"
_FUNCTION = re.compile(r"^\s*Function (\S+)")
_CANONICAL = "SELECT formatQuerySingleLine({statement:String})"


def canonical(session: AnalystSession, sql: str) -> str:
    """The one statement in ``sql`` as ClickHouse's parser renders it (no comments, no semicolon)."""
    try:
        sql.encode()
    except UnicodeEncodeError:
        raise ReadOnlyViolation("not UTF-8", "the statement holds characters that are not valid Unicode") from None
    try:
        return session.check(_CANONICAL, {"statement": sql})[0]
    except QueryError as exc:
        if "Multi-statements are not allowed" in exc.message:
            raise ReadOnlyViolation("multiple statements", "send one statement per request") from None
        if "Empty query" in exc.message:
            raise ReadOnlyViolation("empty", "no statement given") from None
        raise


def check_read_only(sql: str, session: AnalystSession, parameters: Parameters = None) -> str:
    """The statement to run (the parser's rendering), or :class:`ReadOnlyViolation` saying why not."""
    statement = canonical(session, sql)
    keyword = statement.split(None, 1)[0].upper()
    try:
        tree = session.check(f"EXPLAIN AST {statement}", parameters)
    except QueryError as exc:
        # The read-only checking session refuses the settings a statement carries before its tree.
        if exc.code in (_READONLY, _UNKNOWN_SETTING):
            kind = keyword if keyword in ("SET", "USE") else "SETTINGS"
            raise ReadOnlyViolation(kind, "settings changes are not allowed; limits are set by the server") from None
        raise
    root = _node(tree[0])
    if not _is_read(root):
        raise ReadOnlyViolation(keyword, _WRITES)
    options = root == "Explain" and len(tree) > 1 and tree[1].strip() == "Set"
    if root == "Explain":
        explained = _node(tree[2 if options else 1]) if len(tree) > (2 if options else 1) else ""
        if not _is_read(explained):
            raise ReadOnlyViolation(_kind(explained), _WRITES)
    # A quoted name may hold a newline and so add lines to the tree's text; added lines can only add
    # refusals, since each check reads a line the statement cannot move (the root, a TableExpression
    # and the line after it, the root's children) or looks for a line anywhere.
    for index, line in enumerate(tree):
        _check_line(tree, index, line, explain_options=options and index == 1)
    # Appending a FORMAT clause is refused by the parser exactly when the statement has one already.
    try:
        session.check(_CANONICAL, {"statement": f"{statement} FORMAT TabSeparated"})
    except QueryError:
        raise ReadOnlyViolation("FORMAT", "the response format is chosen with the request's format field") from None
    return statement


def _check_line(tree: list[str], index: int, line: str, *, explain_options: bool) -> None:
    node = line.strip()
    if node == "Set" and not explain_options:
        raise ReadOnlyViolation("SETTINGS", "settings changes are not allowed; limits are set by the server")
    if line.startswith(" Literal "):
        # The only literal a statement's root holds is the file of INTO OUTFILE (and its options).
        raise ReadOnlyViolation("INTO OUTFILE", "the answer goes to the response, never to a file")
    function = _FUNCTION.match(line)
    if function is None:
        return
    name = function.group(1)
    is_table = index > 0 and tree[index - 1].strip().startswith("TableExpression")
    if (is_table and name.lower() not in SAFE_TABLE_FUNCTIONS) or name.lower() in FORBIDDEN_FUNCTIONS:
        raise ReadOnlyViolation(f"{name}()", "functions that reach files, URLs, other servers or processes")


def _node(line: str) -> str:
    parts = line.split(None, 1)
    return parts[0] if parts else ""


def _is_read(node: str) -> bool:
    return node in _READ_ROOTS or node.startswith(_READ_ROOT_PREFIXES)


def _kind(node: str) -> str:
    """``InsertQuery`` -> ``INSERT``: a node's name as the statement keyword a person knows."""
    return re.sub(r"Query$", "", node).upper() or "?"
