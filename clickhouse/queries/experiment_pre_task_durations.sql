-- CUPED's pre-period task times of one experiment: the columns of experiment_task_durations, from
-- task_durations (docs/analytics-definitions.md, "Task time"), for the images of each clean unit
-- (experiment_units, contaminated = 0) first clicked in the lookback_days before the unit's first
-- exposure: [first_exposure_at - lookback_days, first_exposure_at) (docs/analytics-definitions.md,
-- "Experiment engine", CUPED).
-- diff_second is NULL for an image without a counted save (none, or one past the cap).
SELECT
    toString(d.input_id) AS input_id,
    d.anonymous_id AS anonymous_id,
    toString(u.variant) AS variant,
    d.first_tool_click_at AS first_tool_click_at,
    d.saved_at AS saved_at,
    d.diff_second AS diff_second
FROM task_durations AS d
INNER JOIN experiment_units(
    experiment_key = {experiment_key:String}, range_start = {from:DateTime64(3, 'UTC')}, range_end = {to:DateTime64(3, 'UTC')}
) AS u ON u.anonymous_id = d.anonymous_id
WHERE u.contaminated = 0
    AND d.first_tool_click_at >= u.first_exposure_at - toIntervalDay({lookback_days:UInt16})
    AND d.first_tool_click_at < u.first_exposure_at
ORDER BY anonymous_id, first_tool_click_at, input_id
