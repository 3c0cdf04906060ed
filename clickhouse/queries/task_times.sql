-- The seed's per-image table, read from the task_durations view (the one definition of task time):
-- first tool click, first inference at or after it, first save at or after that, and the seconds
-- between them (diff_second = first tool click to save), for images whose first tool click falls in
-- the range. A task over TASK_TIME_CAP_S has over_cap = 1 and no save (saved_at, diff_second NULL).
SELECT
    input_id,
    anonymous_id,
    first_tool_click_at,
    first_inference_at,
    saved_at,
    tool_to_inference_s,
    inference_to_save_s,
    diff_second,
    over_cap
FROM task_durations
WHERE first_tool_click_at >= {from:DateTime64(3, 'UTC')} AND first_tool_click_at < {to:DateTime64(3, 'UTC')}
ORDER BY first_tool_click_at, input_id
LIMIT {limit:UInt64}
