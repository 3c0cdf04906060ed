"""The SQL a chart shows runs as is and gives the rows the parameterized statement gave."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from clickhouse.backend import Warehouse
from clickhouse.workspace.answers import Answer, csv_text, inline_sql, literal, respond_answer

HOSTILE = ["it's", "back\\slash", "line\nbreak", "tab\tand 'quotes'", "{x:String}", "'); DROP TABLE events; --", "é€😀"]


@pytest.mark.parametrize("text", HOSTILE)
def test_an_inlined_string_is_the_same_value(warehouse: Warehouse, text: str) -> None:
    sql = "SELECT {s:String} AS s, length({s:String}) AS n"
    parameterized = warehouse.query_rows(sql, {"s": text})
    assert warehouse.query_rows(inline_sql(sql, {"s": text})) == parameterized
    assert parameterized[0]["s"] == text


def test_inlined_scalars_and_arrays_read_back_equal(warehouse: Warehouse) -> None:
    parameters = {
        "at": datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC),
        "n": 3600,
        "x": 0.25,
        "ids": [UUID(int=1), UUID(int=2)],
        "names": ["a'b", "c"],
        "missing": None,
    }
    sql = (
        "SELECT {at:DateTime64(3, 'UTC')} + toIntervalSecond({n:UInt64}) AS later, {x:Float64} * 2 AS x2, "
        "{ids:Array(UUID)} AS ids, {names:Array(String)} AS names, {missing:Nullable(String)} AS missing"
    )
    assert warehouse.query_rows(inline_sql(sql, parameters)) == warehouse.query_rows(sql, parameters)


def test_a_parameter_without_a_value_is_refused() -> None:
    with pytest.raises(KeyError):
        inline_sql("SELECT {a:String}", {})


def test_a_number_type_never_takes_text_unquoted() -> None:
    assert literal("1 OR 1=1", "UInt64") == "CAST('1 OR 1=1' AS UInt64)"
    assert literal(5, "UInt64") == "5"


def test_json_answer_carries_sql_and_figure_only_when_asked() -> None:
    result = Answer([{"step": 1, "units": 3}], "SELECT 1", {"complete": True})

    def chart_of(rows: list[dict[str, int]]) -> dict[str, list[dict[str, list[int]]]]:
        return {"data": [{"y": [row["units"] for row in rows]}]}

    plain = respond_answer(result, "json", 0.0, chart_of)
    charted = respond_answer(result, "json", 0.0, chart_of, chart=True)
    assert b'"sql":"SELECT 1"' in plain.body and b"figure" not in plain.body
    assert b'"figure":{"data":[{"y":[3]}]}' in charted.body
    csv_answer = respond_answer(result, "csv", 0.0)
    assert csv_answer.body.decode() == csv_text(result.rows) == "step,units\r\n1,3\r\n"
    assert csv_answer.headers["x-complete"] == "true"
