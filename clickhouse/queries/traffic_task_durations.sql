-- Recent traffic's task times for planning: task_durations rows (docs/analytics-definitions.md,
-- "Task time") of the images first clicked in [from, to), each in the arm control_key. The clicking
-- device is a unit of traffic_units (a tool click is a funnel step) and the click is at or after
-- its first step, as experiment_task_durations requires of an experiment's units.
-- diff_second is NULL for an image without a counted save (none, or one past the cap).
SELECT
    toString(input_id) AS input_id,
    anonymous_id,
    {control_key:String} AS variant,
    first_tool_click_at,
    saved_at,
    diff_second
FROM task_durations
WHERE first_tool_click_at >= {from:DateTime64(3, 'UTC')} AND first_tool_click_at < {to:DateTime64(3, 'UTC')}
ORDER BY anonymous_id, first_tool_click_at, input_id
