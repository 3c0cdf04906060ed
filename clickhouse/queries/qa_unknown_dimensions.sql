-- QA: tool and inference events whose dimension id is missing, or unknown to the dimension tables
-- at enrichment time, as a share of that event type.
SELECT
    concat(event_type, ': ', problem) AS subject,
    toFloat64(problem_count / type_count) AS value,
    toUInt64(problem_count) AS affected,
    toUInt64(type_count) AS total,
    concat('e.g. event_id ', toString(example)) AS detail
FROM (
    SELECT
        event_type,
        multiIf(
            dimension_id IS NULL, concat('missing ', dimension),
            unknown_dimension OR dimension_name IS NULL, concat('unknown ', dimension, ' ', toString(dimension_id)),
            ''
        ) AS problem,
        count() AS problem_count,
        sum(count()) OVER (PARTITION BY event_type) AS type_count,
        min(event_id) AS example
    FROM (
        SELECT
            toString(event_type) AS event_type,
            event_id,
            unknown_dimension,
            if(event_type = 'tool_selected', 'tool_id', 'inference_id') AS dimension,
            if(event_type = 'tool_selected', tool_id, inference_id) AS dimension_id,
            if(event_type = 'tool_selected', tool_name, inference_name) AS dimension_name
        FROM events FINAL
        WHERE event_type IN ('tool_selected', 'inference_requested', 'inference_completed')
            AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
    )
    GROUP BY event_type, problem
)
WHERE problem != ''
ORDER BY value DESC, subject
