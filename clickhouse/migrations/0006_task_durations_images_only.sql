-- 0005 named `assumeNotNull(input_id)` `input_id`, which renamed the column in its own WHERE too, so
-- `input_id IS NOT NULL` was always true and steps without an image were grouped under the all-zero
-- id. The same view, with the inner key named apart from the column it filters on.
CREATE OR REPLACE VIEW task_durations${on_cluster} AS
SELECT
    image_id AS input_id,
    anonymous_id,
    first_tool_click_at,
    first_inference_at,
    saved_at,
    dateDiff('millisecond', first_tool_click_at, first_inference_at) / 1000 AS tool_to_inference_s,
    dateDiff('millisecond', first_inference_at, saved_at) / 1000 AS inference_to_save_s,
    dateDiff('millisecond', first_tool_click_at, saved_at) / 1000 AS diff_second
FROM
(
    SELECT
        assumeNotNull(input_id) AS image_id,
        any(anonymous_id) AS anonymous_id,
        minIf(event_ts, event_type = 'tool_selected') AS tool_at,
        groupArrayIf(event_ts, event_type = 'inference_requested') AS inference_times,
        groupArrayIf(event_ts, event_type = 'image_saved') AS save_times,
        if(countIf(event_type = 'tool_selected') > 0, tool_at, NULL) AS first_tool_click_at,
        arrayMin(arrayFilter(t -> t >= tool_at, inference_times)) AS inference_candidate,
        if(first_tool_click_at IS NOT NULL AND has(arrayMap(t -> t >= tool_at, inference_times), true),
           inference_candidate, NULL) AS first_inference_at,
        if(first_inference_at IS NOT NULL AND has(arrayMap(t -> t >= inference_candidate, save_times), true),
           arrayMin(arrayFilter(t -> t >= inference_candidate, save_times)), NULL) AS saved_at
    FROM events
    WHERE input_id IS NOT NULL AND event_type IN ('tool_selected', 'inference_requested', 'image_saved')
    GROUP BY image_id
)
WHERE first_tool_click_at IS NOT NULL;
