-- QA: duplicate rate of what reached the warehouse. Two kinds:
-- * the same event_id stored twice: visible until the ReplacingMergeTree merges the parts, so it
--   measures what slipped past the stream dedup recently (the processors count their own hits);
-- * the same content under different event_ids (a tracker that mints a new id on resend): dedup
--   by event_id cannot catch it and no merge removes it. Read from events FINAL, so this kind
--   gives the same answer before and after a merge; the first kind, by design, does not.
SELECT subject, value, affected, total, detail
FROM (
    SELECT
        concat(toString(event_type), ': same event_id stored more than once') AS subject,
        toFloat64((count() - uniqExact(event_id)) / count()) AS value,
        toUInt64(count() - uniqExact(event_id)) AS affected,
        toUInt64(count()) AS total,
        '' AS detail
    FROM events
    WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
    GROUP BY event_type
    UNION ALL
    SELECT
        concat(event_type, ': same content under different event_ids') AS subject,
        toFloat64(sum(ids - 1) / sum(ids)) AS value,
        toUInt64(sum(ids - 1)) AS affected,
        toUInt64(sum(ids)) AS total,
        if(affected > 0, concat('e.g. anonymous_id ', minIf(anonymous_id, ids > 1)), '') AS detail
    FROM (
        SELECT
            toString(event_type) AS event_type,
            anonymous_id,
            uniqExact(event_id) AS ids
        FROM events FINAL
        WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
        GROUP BY event_type, anonymous_id, input_id, job_id, client_ts
    )
    GROUP BY event_type
)
ORDER BY value DESC, subject
