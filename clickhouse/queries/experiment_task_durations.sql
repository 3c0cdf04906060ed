-- Task time per image of one experiment's clean units (the experiment_task_durations view over
-- task_durations): images whose first tool click is at or after the unit's first exposure and in
-- the window. diff_second is NULL for an image without a counted save (none, or one past the cap).
SELECT
    toString(input_id) AS input_id,
    anonymous_id,
    toString(variant) AS variant,
    first_tool_click_at,
    saved_at,
    diff_second
FROM experiment_task_durations(
    experiment_key = {experiment_key:String},
    range_start = {from:DateTime64(3, 'UTC')},
    range_end = {to:DateTime64(3, 'UTC')}
)
ORDER BY anonymous_id, first_tool_click_at, input_id
