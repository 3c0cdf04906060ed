"""Pandas references of the pipeline page's queries: each stage's lag per source (pipeline_lag.sql)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from tests.helpers.reference import quantile_low

ALL_SOURCES = "(all)"
STAGES = ("collector → stream", "stream → warehouse", "end to end")


def _ms(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return (later - earlier) // pd.Timedelta(milliseconds=1)


def pipeline_lag(rows: pd.DataFrame, now: datetime, minutes: int) -> list[dict[str, object]]:
    """``rows``: one per stored event (source, received_at, enriched_at, inserted_at, UTC timestamps).
    The answer's rows in its order: stage, source ('(all)' first), events, P50/P90/P99 and max in ms."""
    seen = rows[(rows.inserted_at > now - timedelta(minutes=minutes)) & (rows.inserted_at <= now)]
    lags = {
        STAGES[0]: _ms(seen.enriched_at, seen.received_at),
        STAGES[1]: _ms(seen.inserted_at, seen.enriched_at),
        STAGES[2]: _ms(seen.inserted_at, seen.received_at),
    }
    out: list[dict[str, object]] = []
    for stage, values in lags.items():
        groups = [
            (ALL_SOURCES, values),
            *((source, values[seen.source == source]) for source in sorted(set(seen.source))),
        ]
        for source, group in groups:
            if group.empty:
                continue
            ms = [int(v) for v in group]
            out.append(
                {
                    "stage": stage,
                    "source": source,
                    "events": len(ms),
                    "p50_ms": float(quantile_low(ms, 0.5)),
                    "p90_ms": float(quantile_low(ms, 0.9)),
                    "p99_ms": float(quantile_low(ms, 0.99)),
                    "max_ms": max(ms),
                }
            )
    return out
