"""Hostile analyst SQL on ``POST /v1/sql`` against a real chdb warehouse.

Item 1: statements smuggled past the check through quoting forms (heredocs, quoted names, comments,
look-alike characters) ran writes, DDL, file and network access. Whatever is sent, nothing outside
the response may change: no file, no table, no row, no request to a listener.
Item 3: one analyst query held the engine's lock (``/readyz`` and loader inserts waited for it) and
had no memory limit. Item 11: reads the old regexes refused, and result types that gave 500.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickhouse.api import create_app
from clickhouse.backend import Warehouse, open_warehouse
from clickhouse.migrate import migrate
from clickhouse.settings import SqlLimits, WarehouseSettings
from funnelstream.settings import ClickHouseConfig
from tests.helpers.analyst_sql import Listener, snapshot

READ_KEY = {"Authorization": "Bearer fs-dev-read-key"}
MAX_SECONDS = 4.0
MEMORY_LIMIT = 256 * 1024 * 1024
CONCURRENT = 2
CANARY_ROWS = 100


@dataclass
class Stack:
    client: TestClient
    engine: Warehouse
    watch: Path
    listener: Listener

    def sql(self, statement: str, **body: Any) -> Any:
        return self.client.post("/v1/sql", json={"sql": statement, **body}, headers=READ_KEY)

    def state(self) -> dict[str, Any]:
        return snapshot(self.engine, self.watch, self.listener)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("analyst-sql")
    watch = root / "watched"
    watch.mkdir()
    engine = open_warehouse(ClickHouseConfig(chdb_path=root / "chdb", database=f"fs_analyst_{uuid.uuid4().hex[:8]}"))
    migrate(engine)
    engine.command("CREATE TABLE canary (n UInt64) ENGINE = MergeTree ORDER BY n")
    engine.insert_arrow("canary", pa.table({"n": pa.array(range(CANARY_ROWS), pa.uint64())}))
    settings = WarehouseSettings(
        clickhouse=ClickHouseConfig(chdb_path=root / "chdb", database=engine.database),
        sql=SqlLimits(max_rows=1000, max_seconds=MAX_SECONDS, max_memory_bytes=MEMORY_LIMIT, max_concurrent=CONCURRENT),
    )
    with Listener() as listener, TestClient(create_app(settings, warehouse=engine, run_loader=False)) as client:
        yield Stack(client, engine, watch, listener)
    engine.close()


def attacks(stack: Stack) -> dict[str, str]:
    """Write, DDL, file and network statements, each aimed at something the snapshot watches."""
    port = stack.listener.port
    return {
        "create": "CREATE TABLE smuggled ENGINE = Memory AS SELECT * FROM file('/etc/passwd', LineAsString)",
        "create_plain": "CREATE TABLE smuggled_plain (a UInt8) ENGINE = Memory",
        "insert": "INSERT INTO canary SELECT number FROM numbers(5)",
        "write_file": f"INSERT INTO FUNCTION file('{stack.watch}/written.csv', 'CSV', 'a UInt8') SELECT 1",
        "outfile": f"SELECT 1 INTO OUTFILE '{stack.watch}/outfile.csv'",
        "drop": "DROP TABLE canary",
        "delete": "DELETE FROM canary WHERE 1",
        "alter_delete": "ALTER TABLE canary DELETE WHERE 1",
        "truncate": "TRUNCATE TABLE canary",
        "url": f"SELECT * FROM url('http://127.0.0.1:{port}/smuggled', 'LineAsString')",
        "read_file": "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "read_file_scalar": "SELECT file('/etc/passwd') AS leaked",
    }


def assert_unchanged(stack: Stack, before: dict[str, Any], response: Any) -> None:
    assert response.status_code < 500, response.text
    assert "root:x:0:0" not in response.text, "a file of the server was read"
    assert stack.state() == before


# --- item 1: the issue's own reproductions --------------------------------------------------------


def test_the_issues_smuggled_statements_are_refused_and_change_nothing(stack: Stack) -> None:
    create = attacks(stack)["create"]
    smuggled = [
        f"SELECT $$'$$; {create}; SELECT $$'$$",
        f"SELECT 1 AS `'`; {create}; SELECT '`'",
        f"SELECT 1 AS \"'\"; {create}; SELECT '\"'",
        f"SELECT $x$'$x$; {create}; SELECT $x$'$x$",
    ]
    for statement in smuggled:
        before = stack.state()
        response = stack.sql(statement)
        assert_unchanged(stack, before, response)
        assert response.status_code == 400, (statement, response.text)
        assert response.json()["error"] == "read_only" and response.json()["statement"] == "multiple statements"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("create", "CREATE"),
        ("create_plain", "CREATE"),
        ("insert", "INSERT"),
        ("write_file", "INSERT"),
        ("outfile", "INTO OUTFILE"),
        ("drop", "DROP"),
        ("delete", "DELETE"),
        ("alter_delete", "ALTER"),
        ("truncate", "TRUNCATE"),
        ("url", "url()"),
        ("read_file", "file()"),
        ("read_file_scalar", "file()"),
    ],
)
def test_each_write_file_and_network_statement_is_refused_naming_it(stack: Stack, name: str, kind: str) -> None:
    before = stack.state()
    response = stack.sql(attacks(stack)[name])
    assert_unchanged(stack, before, response)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "read_only" and body["statement"] == kind, body
    assert "only read-only SELECT statements are allowed" in body["detail"]


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT 1 SETTINGS max_memory_usage = 0, max_execution_time = 0", "SETTINGS"),
        ("SET readonly = 0", "SET"),
        ("SELECT 1 FORMAT TabSeparated", "FORMAT"),
        ("SHOW TABLES FORMAT CSV", "FORMAT"),
        ("SHOW CREATE TABLE canary FORMAT JSON", "FORMAT"),
        ("SHOW TABLES INTO OUTFILE '/tmp/fs-analyst-show.txt'", "INTO OUTFILE"),
        ("EXPLAIN INSERT INTO canary SELECT 1", "INSERT"),
        ("USE system", "USE"),
        ("SYSTEM SHUTDOWN", "SYSTEM"),
        ("KILL QUERY WHERE 1", "KILL"),
        ("SELECT * FROM remote('127.0.0.1:9000', system.one)", "remote()"),
        ("SELECT * FROM executable('id', 'LineAsString', 'a String')", "executable()"),
        ("SELECT * FROM s3('http://127.0.0.1:1/bucket/key', 'CSV')", "s3()"),
    ],
)
def test_settings_output_clauses_and_session_changes_are_refused(stack: Stack, statement: str, kind: str) -> None:
    before = stack.state()
    response = stack.sql(statement)
    assert_unchanged(stack, before, response)
    assert response.status_code == 400 and response.json()["statement"] == kind, response.text
    assert not Path("/tmp/fs-analyst-show.txt").exists()


def test_files_named_anywhere_in_a_statement_are_never_written(stack: Stack) -> None:
    target = stack.watch / "out.csv"
    statements = [
        f"EXPLAIN SELECT 1 INTO OUTFILE '{target}'",
        f"SELECT * FROM (SELECT 1 INTO OUTFILE '{target}')",
        f"WITH x AS (SELECT 1 INTO OUTFILE '{target}') SELECT * FROM x",
        f"SELECT 1 INTO OUTFILE '{target}' AND STDOUT FORMAT CSV",
        f"SELECT 1 INTO OUTFILE '{target}' COMPRESSION 'gzip' LEVEL 3",
        f"DESCRIBE TABLE file('{target}', 'CSV', 'a UInt8')",
        "SELECT 1 WHERE 1 IN file('/etc/passwd', 'LineAsString')",
        "SELECT toUInt8(FILE('/etc/passwd'))",
        f"EXPLAIN TABLE OVERRIDE mysql('127.0.0.1:{stack.listener.port}', 'd', 't', 'u', 'p') PARTITION BY x",
    ]
    for statement in statements:
        before = stack.state()
        response = stack.sql(statement)
        assert_unchanged(stack, before, response)
        assert response.status_code == 400, (statement, response.text)


# --- item 1: the property --------------------------------------------------------------------------

# Openers and closers of the string forms a hand-written splitter can lose track of.
QUOTING = [
    ("'", "'"),
    ("'\\'", "'"),
    ("$$'$$", "$$'$$"),
    ("$tag$'$tag$", "$tag$'$tag$"),
    ("$a$ $$ ' $a$", "$a$ ' $a$"),
    ("`'`", "`'`"),
    ('"\'"', '"\'"'),
    ("'\\\\'", "'"),
    ("-- '\n", "-- '\n"),
    ("# '\n", "# '\n"),
    ("/* ' */", "/* ' */"),
    ("/* /* ' */ */", "/* ' */"),
    ("\uff07", "\uff07"),  # fullwidth apostrophe
    ("\u2019", "\u2019"),  # right single quotation mark
    ("\uff02", "\uff02"),  # fullwidth quotation mark
]
SEPARATORS = [";", " ; ", ";\n", "\uff1b", "\u037e", ";--\n", ";/**/"]  # fullwidth and Greek semicolons


@st.composite
def smuggled_statements(draw: st.DrawFn, payloads: list[str]) -> str:
    opener, closer = draw(st.sampled_from(QUOTING))
    separator = draw(st.sampled_from(SEPARATORS))
    payload = draw(st.sampled_from(payloads))
    inner = draw(st.sampled_from(["", opener, closer]))
    shape = draw(st.integers(0, 3))
    if shape == 0:
        return f"SELECT {opener}{separator}{payload}{separator}SELECT {closer}"
    if shape == 1:
        return f"SELECT 1 AS x {opener}{separator} {payload} {inner}{separator}SELECT {closer} AS y"
    if shape == 2:
        return f"{opener}{payload}{separator}{closer}"
    return f"SELECT {opener}1{closer} {separator}{payload}{separator}{inner}"


def test_no_quoting_form_lets_a_statement_change_anything(stack: Stack) -> None:
    payloads = list(attacks(stack).values())

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(statement=smuggled_statements(payloads))
    def check(statement: str) -> None:
        before = stack.state()
        response = stack.sql(statement)
        assert_unchanged(stack, before, response)
        # A statement that is one read (the payload inside a literal) may run; it only reads.
        assert response.status_code in (200, 400), response.text

    check()


# --- item 3: limits, and the loader and /readyz never wait for an analyst query --------------------

HEAVY = "SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) = 1"


def test_a_query_over_the_memory_limit_is_refused_naming_the_limit(stack: Stack) -> None:
    response = stack.sql("SELECT length(groupArray(number)) AS n FROM numbers(300000000)")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "limit_exceeded" and body["limit"] == "memory", body
    assert "FS_SQL__MAX_MEMORY_BYTES" in body["detail"]


def test_a_query_over_the_time_limit_is_refused_naming_the_limit(stack: Stack) -> None:
    response = stack.sql(HEAVY)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "limit_exceeded" and body["limit"] == "time", body
    assert "FS_SQL__MAX_SECONDS" in body["detail"]


def test_result_size_is_capped_by_the_session_not_the_statement(stack: Stack) -> None:
    response = stack.sql("SELECT number FROM system.numbers")
    assert response.status_code == 200, response.text
    assert response.json()["row_count"] == 1000 and response.json()["truncated"] is True
    csv = stack.sql("SELECT number, 'a\nb\"c' AS s FROM system.numbers", format="csv")
    assert csv.status_code == 200 and csv.headers["x-truncated"] == "true"
    assert csv.text.startswith('"number","s"\n0,"a\nb""c"\n') and csv.text.count("\n") == 1 + 2 * 1000


def _loader_round_trip(engine: Warehouse) -> float:
    """What the loader does per batch: an insert, then a read of what it wrote."""
    started = time.perf_counter()
    marker = time.time_ns()
    engine.insert_arrow("canary", pa.table({"n": pa.array([marker], pa.uint64())}))
    assert engine.query_rows("SELECT count() AS c FROM canary WHERE n = {m:UInt64}", {"m": marker})[0]["c"] == 1
    engine.command("DELETE FROM canary WHERE n = {m:UInt64}", {"m": marker})
    return time.perf_counter() - started


def _readyz(client: TestClient) -> float:
    started = time.perf_counter()
    assert client.get("/readyz", headers=READ_KEY).status_code == 200
    return time.perf_counter() - started


def test_a_long_analyst_query_delays_neither_readyz_nor_the_loader(stack: Stack) -> None:
    baseline_ready = max(_readyz(stack.client) for _ in range(3))
    baseline_load = max(_loader_round_trip(stack.engine) for _ in range(3))
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(stack.sql, HEAVY)
        _wait_until(lambda: _analyst_queries_running(stack.engine) >= 1)
        # Three of each, judged by the middle one: the machine is shared, one sample can stall.
        during_ready = [_readyz(stack.client) for _ in range(3)]
        during_load = [_loader_round_trip(stack.engine) for _ in range(3)]
        still_running = _analyst_queries_running(stack.engine)
        answer = running.result()
    assert still_running >= 1, "the heavy query ended before the measurements; they measured nothing"
    assert answer.status_code == 400 and answer.json()["limit"] == "time", answer.text
    assert sorted(during_ready)[1] <= baseline_ready + 1.0, (during_ready, baseline_ready)
    assert sorted(during_load)[1] <= baseline_load + 1.0, (during_load, baseline_load)


def test_over_the_concurrency_limit_is_429_with_retry_after(stack: Stack) -> None:
    with ThreadPoolExecutor(CONCURRENT) as pool:
        running = [pool.submit(stack.sql, HEAVY) for _ in range(CONCURRENT)]
        _wait_until(lambda: _analyst_queries_running(stack.engine) >= CONCURRENT)
        refused = stack.sql("SELECT 1 AS one")
        answers = [future.result() for future in running]
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1 and "FS_SQL__MAX_CONCURRENT" in refused.json()["detail"]
    assert all(answer.status_code == 400 for answer in answers)
    assert stack.sql("SELECT 1 AS one").json()["rows"] == [{"one": 1}]


def _analyst_queries_running(engine: Warehouse) -> int:
    rows = engine.query_rows(
        "SELECT count() AS n FROM system.processes WHERE query LIKE '%sipHash64(number) = 1%' "
        "AND query NOT LIKE '%system.processes%'"
    )
    return int(rows[0]["n"])


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


# --- item 11: reads the old check refused, and every type serialises -------------------------------


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SELECT 'http://a/--b' AS u", [{"u": "http://a/--b"}]),
        ("SELECT format('{} {}', 'a', 'b') AS f", [{"f": "a b"}]),
        ("SELECT n AS insert FROM canary ORDER BY n LIMIT 1", [{"insert": 0}]),
        ("SELECT 'DROP TABLE canary; --' AS s", [{"s": "DROP TABLE canary; --"}]),
        ("SELECT 1 AS `select`, '#' AS `hash`;", [{"select": 1, "hash": "#"}]),
        ("EXISTS TABLE canary", [{"result": 1}]),
        ("SELECT count() AS c FROM numbers(3)", [{"c": 3}]),
    ],
)
def test_reads_the_old_check_refused_are_answered(stack: Stack, statement: str, expected: list[Any]) -> None:
    response = stack.sql(statement)
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == expected


def test_show_create_describe_and_explain_are_reads(stack: Stack) -> None:
    created = stack.sql("SHOW CREATE TABLE canary")
    assert created.status_code == 200, created.text
    assert "CREATE TABLE" in created.json()["rows"][0]["statement"]
    described = stack.sql("DESCRIBE TABLE canary")
    assert described.json()["rows"][0]["name"] == "n"
    assert stack.sql("EXPLAIN SELECT count() FROM canary").status_code == 200
    assert "canary" in [row["name"] for row in stack.sql("SHOW TABLES").json()["rows"]]


TYPES = """
SELECT toFixedString('ab', 4) AS fixed, unhex('ff00fe') AS binary, 'é' AS text,
  toInt128('-170141183460469231731687303715884105728') AS i128,
  toUInt256('115792089237316195423570985008687907853269984665640564039457584007913129639935') AS u256,
  toDecimal128('12345678901234567890.123456789', 9) AS d128, toBFloat16(1.5) AS bf16, toFloat64(nan) AS fnan,
  toDate32('1900-01-01') AS d32, toDateTime64('2020-01-02 03:04:05.123456', 6, 'UTC') AS dt64,
  toDateTime('2020-01-02 12:04:05', 'Asia/Tokyo') AS dt_tokyo,
  toIPv4('1.2.3.4') AS ip4, toIPv6('::1') AS ip6, toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0') AS uuid,
  CAST('b' AS Enum8('a' = 1, 'b' = 2)) AS enum8, [1, 2, 3] AS arr, map('k', 1) AS m, map(1, unhex('fe')) AS mbin,
  CAST((1, 'x') AS Tuple(a UInt8, b String)) AS tup, CAST(NULL AS Nullable(Int32)) AS nul,
  toLowCardinality('lc') AS lc, CAST([(1, 'a')] AS Nested(x UInt8, y String)) AS nested,
  toUInt64(18446744073709551615) AS u64, toIntervalDay(3) AS interval, true AS flag
"""


def test_every_type_serialises_to_json_and_csv(stack: Stack) -> None:
    response = stack.sql(TYPES)
    assert response.status_code == 200, response.text
    row = response.json()["rows"][0]
    assert row["fixed"] == "ab\x00\x00" and row["text"] == "é"
    assert row["binary"] == "\ufffd\x00\ufffd", "bytes that are not UTF-8 become U+FFFD"
    assert row["i128"] == -(2**127) and row["u256"] == 2**256 - 1 and row["u64"] == 2**64 - 1
    assert row["d128"] == "12345678901234567890.123456789" and row["bf16"] == 1.5 and row["fnan"] is None
    assert row["d32"] == "1900-01-01" and row["dt64"] == "2020-01-02T03:04:05.123456Z"
    assert row["dt_tokyo"] == "2020-01-02T03:04:05Z"
    assert (row["ip4"], row["ip6"], row["uuid"]) == ("1.2.3.4", "::1", "61f0c404-5cb3-11e7-907b-a6006ad3dba0")
    assert row["enum8"] == "b" and row["arr"] == [1, 2, 3] and row["m"] == {"k": 1} and row["mbin"] == {"1": "\ufffd"}
    assert row["tup"] == {"a": 1, "b": "x"} and row["nul"] is None and row["lc"] == "lc"
    assert row["nested"] == [{"x": 1, "y": "a"}] and row["interval"] == 3 and row["flag"] is True
    csv = stack.sql(TYPES, format="csv")
    assert csv.status_code == 200, csv.text
    header, values = csv.text.splitlines()[:2]
    assert header.startswith('"fixed","binary","text","i128"') and "-170141183460469231731687303715884105728" in values
    assert "\ufffd" in values and '"1.2.3.4"' in values


def test_named_queries_answer_with_the_same_types(stack: Stack) -> None:
    response = stack.client.post(
        "/v1/queries/scores_by_model",
        json={"parameters": {"from": "2026-01-01 00:00:00", "to": "2026-01-02 00:00:00"}},
        headers=READ_KEY,
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == []
    fresh = stack.client.post("/v1/queries/freshness", json={"parameters": {"minutes": 5}}, headers=READ_KEY)
    assert fresh.status_code == 200 and fresh.json()["rows"][0]["events"] == 0, fresh.text


@pytest.mark.parametrize(
    "body",
    [
        {"sql": "SELECT '\ud800' AS lone_surrogate"},
        {"sql": "SELECT {p:String} AS p", "parameters": {"p": "\ud800"}},
        {"sql": "SELECT {p:String} AS p", "parameters": {"a b": 1}},
        {"sql": "SELECT {p:UInt8} AS p", "parameters": {"p": "not a number"}},
        {"sql": "SELECT {p:Array(String)} AS p", "parameters": {"p": {"k": [1, None, {"x": True}]}}},
        {"sql": "SELECT {p:String} AS p"},
        {"sql": "SELECT throwIf(1, 'boom')"},
        {"sql": "SELECT intDiv(1, 0)"},
        {"sql": "SELECT * FROM no_such_table"},
        {"sql": "SELEC 1"},
        {"sql": "  -- only a comment"},
        {"sql": ";"},
        {"sql": "SELECT 1", "format": "xml"},
        {"sql": "SELECT " + " + ".join(["1"] * 5000)},
        {"sql": "SELECT " + "(" * 2000 + "1" + ")" * 2000},
        {"sql": "SELECT 1 AS `\n    Function numbers`"},
    ],
)
def test_no_input_gives_a_5xx(stack: Stack, body: dict[str, Any]) -> None:
    # ASCII JSON, so a lone surrogate travels as the escape a hostile client would send.
    headers = {**READ_KEY, "Content-Type": "application/json"}
    response = stack.client.post("/v1/sql", content=json.dumps(body), headers=headers)
    assert response.status_code < 500, response.text
    named_body = json.dumps({"parameters": body.get("parameters", {})})
    named = stack.client.post("/v1/queries/freshness", content=named_body, headers=headers)
    assert named.status_code < 500, named.text


def test_a_failed_query_leaves_nothing_in_the_next_answer(stack: Stack) -> None:
    # chdb keeps what a failed statement had written (here the CSV header) and hands it to the next
    # statement of that session: another client's answer.
    for _ in range(CONCURRENT + 1):
        failed = stack.sql("SELECT throwIf(number = 1, 'boom') AS leaked FROM numbers(2)", format="csv")
        assert failed.status_code == 400, failed.text
    for _ in range(CONCURRENT + 1):
        assert stack.sql("SELECT 1 AS one", format="csv").text == '"one"\n1\n'
        assert stack.sql("SELECT 1 AS one").json()["rows"] == [{"one": 1}]


def test_parameters_round_trip_exactly(stack: Stack) -> None:
    text = 'back\\slash, new\nline, tab\t, quote\' "double", \\N, nul\x00, ünïcode 😀'
    response = stack.sql("SELECT {p:String} AS p, {a:Array(String)} AS a", parameters={"p": text, "a": [text, "x"]})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"p": text, "a": [text, "x"]}]
