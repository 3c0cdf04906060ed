-- QA: device clock skew (sent_at − received_at; positive when the device runs ahead) per source:
-- the share of events beyond the skew limit, with the distribution in the detail. event_ts is
-- corrected at ingest, so skew does not corrupt times; a jump in it points at a broken tracker.
SELECT
    if(toString(source) = '', '(no source)', toString(source)) AS subject,
    toFloat64(countIf(abs(skew_ms) > {skew_limit_s:UInt32} * 1000) / count()) AS value,
    toUInt64(countIf(abs(skew_ms) > {skew_limit_s:UInt32} * 1000)) AS affected,
    toUInt64(count()) AS total,
    quantilesExactWeighted(0.01, 0.5, 0.99)(skew_ms, 1) AS q,
    concat(
        'skew s: p01 ', toString(round(q[1] / 1000, 1)),
        ', p50 ', toString(round(q[2] / 1000, 1)),
        ', p99 ', toString(round(q[3] / 1000, 1)),
        ', max |skew| ', toString(round(max(abs(skew_ms)) / 1000, 1))
    ) AS detail
FROM (
    SELECT source, dateDiff('millisecond', received_at, assumeNotNull(sent_at)) AS skew_ms
    FROM events FINAL
    WHERE sent_at IS NOT NULL
        AND received_at >= {from:DateTime64(3, 'UTC')} AND received_at < {to:DateTime64(3, 'UTC')}
)
GROUP BY source
HAVING count() > 0
ORDER BY value DESC, subject
