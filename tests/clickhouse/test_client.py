"""Readers of the query API at the HTTP boundary: which answers are sent again, how long they wait,
and what a reader raises for each answer (a fake transport stands in for the server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from clickhouse.client import RETRY_ATTEMPTS, ApiReader, retry_after_s, send_retrying
from clickhouse.errors import QueryError, WarehouseUnavailable
from clickhouse.qa.remote import WarehouseApi
from funnelstream.errors import ConfigurationError, TransientError

BUSY = {"error": "too_many_queries", "detail": "2 analyst queries are running (FS_SQL__MAX_CONCURRENT)"}
ROWS = {"rows": [{"one": 1}], "row_count": 1}


def answers(*scripted: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that answers the scripted responses in turn, the last one for ever."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return scripted[min(len(sent), len(scripted)) - 1]

    return httpx.MockTransport(handle), sent


def busy(retry_after: str = "0") -> httpx.Response:
    return httpx.Response(429, json=BUSY, headers={"Retry-After": retry_after})


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def reader() -> Iterator[Callable[..., tuple[ApiReader, list[httpx.Request]]]]:
    opened: list[ApiReader] = []

    def make(*scripted: httpx.Response) -> tuple[ApiReader, list[httpx.Request]]:
        transport, sent = answers(*scripted)
        opened.append(ApiReader("http://warehouse", "k", transport=transport))
        return opened[-1], sent

    yield make
    for each in opened:
        each.close()


def test_a_busy_warehouse_is_asked_again_and_answers(reader: Any) -> None:
    api, sent = reader(busy(), busy(), httpx.Response(200, json=ROWS))
    assert api.query_rows("SELECT 1 AS one") == [{"one": 1}]
    assert len(sent) == 3 and all(r.headers["authorization"] == "Bearer k" for r in sent)


def test_a_warehouse_busy_past_the_attempts_is_transient_not_a_query_error(reader: Any) -> None:
    api, sent = reader(busy())
    with pytest.raises(WarehouseUnavailable) as raised:
        api.named("funnel", {"step1": "image_uploaded"})
    assert isinstance(raised.value, TransientError) and not isinstance(raised.value, QueryError)
    assert "429" in str(raised.value) and len(sent) == RETRY_ATTEMPTS


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (httpx.Response(429, json={"error": "rate_limited", "field": "Authorization"}), ConfigurationError),
        (httpx.Response(401, json={"error": "unauthorized"}), ConfigurationError),
        (httpx.Response(400, json={"error": "limit_exceeded", "limit": "memory"}), QueryError),
        (httpx.Response(503, json={"error": "warehouse"}), WarehouseUnavailable),
    ],
)
def test_other_answers_are_sent_once(reader: Any, answer: httpx.Response, raised: type[Exception]) -> None:
    api, sent = reader(answer)
    with pytest.raises(raised):
        api.query_rows("SELECT 1")
    assert len(sent) == 1


def test_the_wait_is_the_servers_and_bounded_in_attempts_and_time() -> None:
    clock = FakeClock()
    transport, sent = answers(busy("3"))
    with httpx.Client(transport=transport) as client:
        last = send_retrying(lambda: client.get("http://w/"), attempts=3, sleep=clock.sleep, clock=lambda: clock.now)
    assert last.status_code == 429 and len(sent) == 3 and clock.slept == [3.0, 3.0]
    # A Retry-After past the cap is cut to it; no wait that would end past the budget is started.
    clock = FakeClock()
    transport, sent = answers(busy("3600"))
    with httpx.Client(transport=transport) as client:
        send_retrying(
            lambda: client.get("http://w/"), attempts=50, budget_s=25, sleep=clock.sleep, clock=lambda: clock.now
        )
    assert clock.slept == [10.0, 10.0] and len(sent) == 3


@pytest.mark.parametrize(
    ("status", "headers", "body", "wait"),
    [
        (429, {"Retry-After": "2"}, BUSY, 2.0),
        (429, {}, BUSY, 1.0),
        (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, BUSY, 1.0),
        (429, {"Retry-After": "nan"}, BUSY, 10.0),
        (429, {"Retry-After": "-5"}, BUSY, 0.0),
        (429, {"Retry-After": "1"}, {"error": "rate_limited"}, None),
        (503, {"Retry-After": "2"}, {"detail": "warehouse unavailable"}, 2.0),
        (503, {}, {"error": "warehouse"}, None),
        (400, {"Retry-After": "1"}, {"error": "limit_exceeded"}, None),
        (200, {}, ROWS, None),
    ],
)
def test_what_is_transient(status: int, headers: dict[str, str], body: Any, wait: float | None) -> None:
    assert retry_after_s(httpx.Response(status, json=body, headers=headers)) == wait
    assert retry_after_s(httpx.Response(429, content=b"not json")) is None


def test_qa_reads_retry_a_busy_warehouse_and_then_call_it_transient() -> None:
    transport, sent = answers(busy(), httpx.Response(200, json=ROWS))
    with httpx.Client(base_url="http://w", transport=transport) as client:
        assert WarehouseApi("http://w", read_key="k", client=client).query_rows("SELECT 1") == [{"one": 1}]
    assert len(sent) == 2
    transport, sent = answers(busy())
    with httpx.Client(base_url="http://w", transport=transport) as client, pytest.raises(WarehouseUnavailable):
        WarehouseApi("http://w", read_key="k", client=client).query_rows("SELECT 1")
    assert len(sent) == RETRY_ATTEMPTS


def test_experiment_results_retry_a_busy_warehouse(monkeypatch: pytest.MonkeyPatch) -> None:
    from clickhouse.experiments.warehouse import fetch_results_via_api
    from funnelstream.experiments.errors import WarehouseUnavailableError

    transport, sent = answers(busy())
    client = httpx.Client(transport=transport)
    monkeypatch.setattr(httpx, "get", lambda url, **options: client.get(url, params=options["params"]))
    with pytest.raises(WarehouseUnavailableError, match="429"):
        fetch_results_via_api("http://w", "k", "exp", sequential=False)
    client.close()
    assert len(sent) == RETRY_ATTEMPTS and sent[0].url.path == "/v1/experiments/exp/results"
