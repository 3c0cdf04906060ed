-- Lag of each pipeline stage per source, over the rows that became visible in the {minutes} minutes
-- up to {now}: collector → stream (enriched_at − received_at), stream → warehouse (inserted_at −
-- enriched_at) and end to end (inserted_at − received_at, freshness.sql's lag). Quantiles are the
-- lower inverted-CDF ones of docs/analytics-definitions.md (quantileExactWeighted with weight 1);
-- source '(all)' is every source together. Reads events FINAL: the first received copy counts.
SELECT
    hop.2 AS stage,
    scope AS source,
    count() AS events,
    round(quantileExactWeighted(0.5)(hop.3, 1)) AS p50_ms,
    round(quantileExactWeighted(0.9)(hop.3, 1)) AS p90_ms,
    round(quantileExactWeighted(0.99)(hop.3, 1)) AS p99_ms,
    max(hop.3) AS max_ms
FROM
(
    SELECT
        source AS event_source,
        dateDiff('millisecond', received_at, enriched_at) AS collector_ms,
        dateDiff('millisecond', enriched_at, inserted_at) AS stream_ms
    FROM events FINAL
    WHERE inserted_at > {now:DateTime64(3, 'UTC')} - toIntervalMinute({minutes:UInt32})
        AND inserted_at <= {now:DateTime64(3, 'UTC')}
)
ARRAY JOIN
    [
        (1, 'collector → stream', collector_ms),
        (2, 'stream → warehouse', stream_ms),
        (3, 'end to end', collector_ms + stream_ms)
    ] AS hop
ARRAY JOIN [event_source, '(all)'] AS scope
GROUP BY hop.1, hop.2, scope
ORDER BY hop.1, scope = '(all)' DESC, scope
