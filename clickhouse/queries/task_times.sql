-- The seed's per-image table: first tool click, first inference at or after it, first save at or
-- after that, and the seconds between them (diff_second = first tool click to save), for images
-- whose first tool click falls in the range. Minimums only: duplicates cannot change it.
SELECT
    input_id,
    anonymous_id,
    first_tool_click_at,
    first_inference_at,
    saved_at,
    tool_to_inference_s,
    inference_to_save_s,
    diff_second
FROM task_durations
WHERE first_tool_click_at >= {from:DateTime64(3, 'UTC')} AND first_tool_click_at < {to:DateTime64(3, 'UTC')}
ORDER BY first_tool_click_at, input_id
LIMIT {limit:UInt64}
