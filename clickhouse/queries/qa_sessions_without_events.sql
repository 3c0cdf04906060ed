-- QA: session summaries with no event of theirs in the warehouse (events lost between the
-- processors and the warehouse). Sessions still open within the grace period are not judged,
-- since their events may be in flight.
SELECT
    'sessions without events' AS subject,
    toFloat64(countIf(missing) / count()) AS value,
    toUInt64(countIf(missing)) AS affected,
    toUInt64(count()) AS total,
    if(affected > 0, concat('e.g. session_id ', minIf(session_id, missing)), '') AS detail
FROM (
    SELECT
        session_id,
        session_id NOT IN (
            SELECT session_id FROM events FINAL
            WHERE event_ts >= {from:DateTime64(3, 'UTC')} - INTERVAL 1 DAY
                AND event_ts < {to:DateTime64(3, 'UTC')} + INTERVAL 1 DAY
        ) AS missing
    FROM (
        SELECT DISTINCT session_id FROM sessions
        WHERE started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
            AND last_event_at < {to:DateTime64(3, 'UTC')} - toIntervalSecond({grace_s:UInt32})
    )
)
HAVING count() > 0
