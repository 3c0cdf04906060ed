-- QA: dead letters per stage, source, reason and first failing field, as a share of everything
-- that source sent.
-- Columns of every qa_* query: subject, value (compared with the check's threshold), affected,
-- total, detail.
WITH
    dead AS (
        SELECT
            stage,
            ifNull(source, '') AS src,
            substring(reason, 1, 160) AS why,
            if(empty(errors), '', tupleElement(errors[1], 'field')) AS field,
            count() AS dead_count,
            min(ifNull(event_id, '')) AS example
        FROM dlq_events
        WHERE failed_at >= {from:DateTime64(3, 'UTC')} AND failed_at < {to:DateTime64(3, 'UTC')}
        GROUP BY stage, src, why, field
    ),
    dead_per_source AS (
        SELECT src, sum(dead_count) AS source_dead FROM dead GROUP BY src
    ),
    accepted AS (
        SELECT toString(source) AS src, count() AS source_accepted
        FROM events FINAL
        WHERE received_at >= {from:DateTime64(3, 'UTC')} AND received_at < {to:DateTime64(3, 'UTC')}
        GROUP BY src
    )
SELECT
    concat(
        toString(stage), ' / ', if(src = '', '(no source)', src), ' / ', why,
        if(field = '', '', concat(' [', field, ']'))
    ) AS subject,
    toFloat64(dead_count / greatest(source_dead + source_accepted, 1)) AS value,
    toUInt64(dead_count) AS affected,
    toUInt64(source_dead + source_accepted) AS total,
    if(example = '', '', concat('e.g. event_id ', example)) AS detail
FROM dead
LEFT JOIN dead_per_source USING (src)
LEFT JOIN accepted USING (src)
ORDER BY value DESC, subject
