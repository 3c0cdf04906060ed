-- Freshness: from the collector's acceptance (received_at) to visibility in `events`
-- (inserted_at), over rows that became visible in the last {minutes} minutes. Quantiles are the
-- lower inverted-CDF ones of docs/analytics-definitions.md (quantileExactWeighted with weight 1).
-- Reads events FINAL: the first received copy of a resent event counts.
SELECT
    count() AS events,
    if(count() = 0, NULL, round(quantileExactWeighted(0.5)(lag_ms, 1))) AS p50_ms,
    if(count() = 0, NULL, round(quantileExactWeighted(0.9)(lag_ms, 1))) AS p90_ms,
    if(count() = 0, NULL, round(quantileExactWeighted(0.99)(lag_ms, 1))) AS p99_ms,
    max(lag_ms) AS max_ms,
    max(inserted_at) AS last_visible_at
FROM
(
    SELECT dateDiff('millisecond', received_at, inserted_at) AS lag_ms, inserted_at
    FROM events FINAL
    WHERE inserted_at >= now64(3, 'UTC') - toIntervalMinute({minutes:UInt32})
)
