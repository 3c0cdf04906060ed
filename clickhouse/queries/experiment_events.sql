-- The events that count for one experiment: the funnel events and inference results of its clean
-- units (experiment_units, contaminated = 0) at or after the unit's first exposure and before the
-- window's end (docs/analytics-definitions.md, "Experiment units"). Every per-unit conversion,
-- score and inference failure rate of the experiment analysis is computed from these rows.
-- status: 'succeeded' or 'failed' on inference_completed, NULL on the other kinds.
-- FINAL: the copy of a re-sent event that counts is the table's, before a merge too.
-- No ORDER BY: readers sum per unit, exact in any order, and sorting millions of rows is a large
-- share of the query's time.
SELECT
    e.anonymous_id AS anonymous_id,
    u.variant AS variant,
    toString(e.event_type) AS event_type,
    e.event_ts AS event_ts,
    toString(e.input_id) AS input_id,
    toNullable(toFloat64(e.score)) AS score,
    CAST(e.status, 'Nullable(String)') AS status
FROM events AS e FINAL
INNER JOIN
(
    SELECT anonymous_id AS unit_id, toString(variant) AS variant, first_exposure_at
    FROM experiment_units(
        experiment_key = {experiment_key:String},
        range_start = {from:DateTime64(3, 'UTC')},
        range_end = {to:DateTime64(3, 'UTC')}
    )
    WHERE contaminated = 0
) AS u ON u.unit_id = e.anonymous_id
WHERE e.event_type IN ('image_uploaded', 'tool_selected', 'inference_requested', 'inference_completed',
                       'image_saved', 'score_submitted')
    AND e.event_ts >= u.first_exposure_at
    AND e.event_ts < {to:DateTime64(3, 'UTC')}
