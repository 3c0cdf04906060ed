-- Freshness: from the collector's acceptance (received_at) to visibility in `events`
-- (inserted_at), over rows that became visible in the last {minutes} minutes.
SELECT
    count() AS events,
    round(quantile(0.5)(lag_ms)) AS p50_ms,
    round(quantile(0.9)(lag_ms)) AS p90_ms,
    round(quantile(0.99)(lag_ms)) AS p99_ms,
    max(lag_ms) AS max_ms,
    max(inserted_at) AS last_visible_at
FROM
(
    SELECT dateDiff('millisecond', received_at, inserted_at) AS lag_ms, inserted_at
    FROM events FINAL
    WHERE inserted_at >= now64(3, 'UTC') - toIntervalMinute({minutes:UInt32})
)
