-- QA: events whose device said they happened after they were sent (flagged "future" at ingest and
-- clamped), and any event time after its server receipt, which correction should make impossible.
SELECT
    if(toString(source) = '', '(no source)', toString(source)) AS subject,
    toFloat64(countIf(timestamp_flag = 'future' OR event_ts > received_at + INTERVAL 5 SECOND) / count()) AS value,
    toUInt64(countIf(timestamp_flag = 'future' OR event_ts > received_at + INTERVAL 5 SECOND)) AS affected,
    toUInt64(count()) AS total,
    if(
        affected > 0,
        concat(
            toString(countIf(timestamp_flag = 'future')), ' flagged future at ingest, ',
            toString(countIf(event_ts > received_at + INTERVAL 5 SECOND)), ' with event_ts after received_at; ',
            'e.g. event_id ',
            toString(minIf(event_id, timestamp_flag = 'future' OR event_ts > received_at + INTERVAL 5 SECOND))
        ),
        ''
    ) AS detail
FROM events FINAL
WHERE received_at >= {from:DateTime64(3, 'UTC')} AND received_at < {to:DateTime64(3, 'UTC')}
GROUP BY source
ORDER BY value DESC, subject
