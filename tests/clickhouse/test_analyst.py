"""Analyst sessions without an engine: the server path's settings and errors, answers cut to size.

The chdb path is tested against the real engine in tests/security/test_analyst_sql.py; no server
runs here, so the ClickHouse server path is checked at its boundary, clickhouse-connect's client.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from clickhouse.analyst import AnalystPool, shape
from clickhouse.backend import AnalystLimits, AnalystSession, ServerAnalystSession, _wire_text, analyst_settings
from clickhouse.errors import AnalystBusy, LimitExceeded, QueryError, WarehouseUnavailable

LIMITS = AnalystLimits(
    max_rows=2, max_seconds=7, max_memory_bytes=1 << 30, max_result_bytes=1 << 20, max_threads=2, max_concurrent=1
)


def test_readonly_is_the_last_setting_so_nothing_after_it_can_change() -> None:
    settings = analyst_settings(LIMITS)
    assert list(settings)[-1] == "readonly" and settings["readonly"] == 1
    assert settings["max_execution_time"] == 7 and settings["max_memory_usage"] == 1 << 30
    assert settings["limit"] == settings["max_result_rows"] == 3 and settings["result_overflow_mode"] == "break"
    assert settings["max_threads"] == 2 and settings["max_result_bytes"] == 1 << 20
    checking = analyst_settings(LIMITS, result_limits=False)
    assert "limit" not in checking and checking["readonly"] == 1 and checking["max_execution_time"] == 7
    assert analyst_settings(LIMITS, readonly=2)["readonly"] == 2


class FakeClient:
    """clickhouse-connect's client at the boundary: records each request, answers or raises."""

    def __init__(self, **connect: Any) -> None:
        self.connect = connect
        self.requests: list[dict[str, Any]] = []
        self.answer: bytes | Exception = b""
        self.closed = False

    def raw_query(self, sql: str, parameters: dict[str, Any], settings: dict[str, Any], fmt: str) -> bytes:
        self.requests.append({"sql": sql, "parameters": parameters, "settings": settings, "fmt": fmt})
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def server_session(monkeypatch: pytest.MonkeyPatch) -> tuple[ServerAnalystSession, list[FakeClient]]:
    import clickhouse_connect

    made: list[FakeClient] = []

    def get_client(**connect: Any) -> FakeClient:
        made.append(FakeClient(**connect))
        return made[-1]

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    session = ServerAnalystSession({"host": "ch", "port": 8123}, "fs", LIMITS, readonly=1)
    return session, made


def test_server_analyst_requests_carry_every_limit(
    server_session: tuple[ServerAnalystSession, list[FakeClient]],
) -> None:
    session, made = server_session
    (client,) = made
    assert client.connect["database"] == "fs" and client.connect["autogenerate_session_id"] is False
    client.answer = b'{"n":1}\n'
    assert session.run("SELECT 1 AS n", {"p": 1}, "JSONEachRow") == b'{"n":1}\n'
    client.answer = b'["SELECT 1"]\n'
    assert session.check("SELECT formatQuerySingleLine({statement:String})", {"statement": "select 1"}) == ["SELECT 1"]
    ran, checked = client.requests
    assert ran["settings"] == analyst_settings(LIMITS) and ran["fmt"] == "JSONEachRow"
    assert ran["parameters"] == {"p": 1}
    assert checked["settings"] == analyst_settings(LIMITS, result_limits=False)
    session.close()
    assert client.closed


def test_server_errors_are_the_analysts_not_transient(
    server_session: tuple[ServerAnalystSession, list[FakeClient]],
) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    session, made = server_session
    made[0].answer = DatabaseError("Code: 241. DB::Exception: Memory limit (for query) exceeded")
    with pytest.raises(QueryError) as refused:
        session.run("SELECT 1", None, "JSONEachRow")
    assert refused.value.code == 241
    made[0].answer = OperationalError("connection refused")
    with pytest.raises(WarehouseUnavailable):
        session.run("SELECT 1", None, "JSONEachRow")


class ScriptedSession:
    """An analyst session that parses nothing and answers what it is told."""

    def __init__(self, error: QueryError | None = None) -> None:
        self.error = error
        self.closed = False

    def check(self, sql: str, parameters: Any = None) -> list[str]:
        return ["SELECT 1"]

    def run(self, sql: str, parameters: Any, fmt: str) -> bytes:
        if self.error is not None:
            raise self.error
        return b'{"one":1}\n'

    def close(self) -> None:
        self.closed = True


class ScriptedEngine:
    def __init__(self, session: ScriptedSession) -> None:
        self.session = session
        self.opened = 0

    def analyst_session(self, limits: AnalystLimits, *, trusted: bool = False, whole: bool = False) -> AnalystSession:
        self.opened += 1
        return self.session


def test_the_pool_refuses_past_its_size_and_reuses_sessions() -> None:
    engine = ScriptedEngine(ScriptedSession())
    pool = AnalystPool(engine, LIMITS)
    with pool.session(), pytest.raises(AnalystBusy):
        pool.session().__enter__()
    with pool.session():
        pass
    assert engine.opened == 1
    pool.close()
    assert engine.session.closed


@pytest.mark.parametrize(
    ("code", "limit", "setting"),
    [
        (159, "time", "FS_SQL__MAX_SECONDS"),
        (241, "memory", "FS_SQL__MAX_MEMORY_BYTES"),
        (396, "result", "FS_SQL__MAX_RESULT_BYTES"),
    ],
)
def test_a_limit_clickhouse_enforced_is_named(code: int, limit: str, setting: str) -> None:
    pool = AnalystPool(ScriptedEngine(ScriptedSession(QueryError("over", sql="", code=code))), LIMITS)
    with pytest.raises(LimitExceeded) as refused:
        pool.named("SELECT 1", None)
    assert refused.value.limit == limit and refused.value.setting == setting


def test_json_answers_are_cut_at_max_rows_and_made_utf8() -> None:
    answer = shape(b'{"a":1}\n{"a":2}\n{"a":3}\n', "json", 2)
    assert orjson.loads(answer.body) == [{"a": 1}, {"a": 2}] and answer.rows == 2 and answer.truncated
    whole = shape(b'{"a":"\xff"}\n', "json", 2)
    assert orjson.loads(whole.body) == [{"a": "\ufffd"}] and not whole.truncated
    assert shape(b"", "json", 2).body == b"[]"


def test_csv_answers_are_cut_between_rows_not_inside_a_quoted_newline() -> None:
    csv = b'"a","b"\n1,"x\ny"\n2,"q""\n"\n3,z\n'
    cut = shape(csv, "csv", 2)
    assert cut.body == b'"a","b"\n1,"x\ny"\n2,"q""\n"\n' and cut.rows == 2 and cut.truncated
    whole = shape(csv, "csv", 3)
    assert whole.body == csv and whole.rows == 3 and not whole.truncated
    assert shape(b'"a"\n', "csv", 2).rows == 0


def test_scalar_parameters_are_escaped_for_chdb_and_composites_are_not() -> None:
    assert _wire_text("a\\b\nc\td\re") == "a\\\\b\\nc\\td\\re"
    assert _wire_text(None) == "\\N"
    assert _wire_text(["x'y"]) == "['x\\'y']"
