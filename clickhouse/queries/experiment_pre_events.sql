-- CUPED's pre-period events of one experiment: the rows and columns of experiment_events (funnel
-- events and inference results, status on inference_completed) for each clean unit
-- (experiment_units, contaminated = 0), over the lookback_days before its first exposure:
-- [first_exposure_at - lookback_days, first_exposure_at) (docs/analytics-definitions.md,
-- "Experiment engine", CUPED). A unit without such events has no row; its pre-period value is 0.
SELECT
    e.anonymous_id AS anonymous_id,
    u.arm AS variant,
    toString(e.event_type) AS event_type,
    e.event_ts AS event_ts,
    toString(e.input_id) AS input_id,
    toNullable(toFloat64(e.score)) AS score,
    CAST(e.status, 'Nullable(String)') AS status
FROM events AS e FINAL
INNER JOIN
(
    SELECT
        anonymous_id AS unit_id,
        toString(variant) AS arm,
        first_exposure_at - toIntervalDay({lookback_days:UInt16}) AS since,
        first_exposure_at AS until
    FROM experiment_units(
        experiment_key = {experiment_key:String},
        range_start = {from:DateTime64(3, 'UTC')},
        range_end = {to:DateTime64(3, 'UTC')}
    )
    WHERE contaminated = 0
) AS u ON u.unit_id = e.anonymous_id
-- The bounds on e.event_ts alone let the scan skip what no unit's lookback reaches. No ORDER BY:
-- readers sum per unit, exact in any order, and sorting millions of rows is a large share of the time.
WHERE e.event_ts >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback_days:UInt16})
    AND e.event_ts < {to:DateTime64(3, 'UTC')}
    AND e.event_ts >= u.since AND e.event_ts < u.until
    AND e.event_type IN ('image_uploaded', 'tool_selected', 'inference_requested', 'inference_completed',
                         'image_saved', 'score_submitted')
