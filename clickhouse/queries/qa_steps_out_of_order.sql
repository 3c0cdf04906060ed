-- QA: images whose funnel steps happened in an impossible order, comparing the first event of
-- each step. Images with any event in the window are judged on all their events so far.
-- A small tolerance absorbs the gap between device-corrected and server clocks.
WITH
    touched AS (
        SELECT DISTINCT input_id FROM events FINAL
        WHERE input_id IS NOT NULL
            AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
    ),
    per_image AS (
        SELECT
            input_id,
            countIf(event_type = 'image_uploaded') > 0 AS has_upload,
            countIf(event_type = 'tool_selected') > 0 AS has_tool,
            countIf(event_type = 'inference_requested') > 0 AS has_request,
            countIf(event_type = 'inference_completed') > 0 AS has_completion,
            countIf(event_type = 'image_saved') > 0 AS has_save,
            countIf(event_type = 'score_submitted') > 0 AS has_score,
            minIf(event_ts, event_type = 'image_uploaded') AS uploaded_at,
            minIf(event_ts, event_type = 'tool_selected') AS tool_at,
            minIf(event_ts, event_type = 'inference_requested') AS requested_at,
            minIf(event_ts, event_type = 'inference_completed') AS completed_at,
            minIf(event_ts, event_type = 'image_saved') AS saved_at,
            minIf(event_ts, event_type = 'score_submitted') AS scored_at
        FROM events FINAL
        WHERE input_id IN (SELECT input_id FROM touched) AND event_ts < {to:DateTime64(3, 'UTC')}
        GROUP BY input_id
    ),
    toIntervalMillisecond({tolerance_ms:UInt32}) AS tolerance
SELECT
    pair.1 AS subject,
    toFloat64(countIf(pair.2 AND pair.3) / countIf(pair.2)) AS value,
    toUInt64(countIf(pair.2 AND pair.3)) AS affected,
    toUInt64(countIf(pair.2)) AS total,
    if(affected > 0, concat('e.g. input_id ', toString(minIf(input_id, pair.2 AND pair.3))), '') AS detail
FROM per_image
ARRAY JOIN [
    ('tool_selected before image_uploaded', has_upload AND has_tool, tool_at + tolerance < uploaded_at),
    ('inference_requested before tool_selected', has_tool AND has_request, requested_at + tolerance < tool_at),
    ('inference_completed before inference_requested', has_request AND has_completion,
        completed_at + tolerance < requested_at),
    ('image_saved before inference_requested', has_request AND has_save, saved_at + tolerance < requested_at),
    ('score_submitted before image_saved', has_save AND has_score, scored_at + tolerance < saved_at)
] AS pair
GROUP BY subject
HAVING total > 0
ORDER BY value DESC, subject
