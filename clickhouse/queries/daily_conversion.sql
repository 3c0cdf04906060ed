-- Daily conversion trend for images: by the day of each image's first upload in the range, how
-- many images reached tool, inference, save and score within {window_s} seconds (windowFunnel,
-- ordered), and upload-to-save conversion. Duplicate-insensitive (windowFunnel, min).
SELECT
    day,
    count() AS uploaded,
    countIf(level >= 2) AS tool,
    countIf(level >= 3) AS inference,
    countIf(level >= 4) AS saved,
    countIf(level >= 5) AS scored,
    round(if(uploaded = 0, 0, saved / uploaded), 6) AS upload_to_save
FROM
(
    SELECT
        image,
        toDate(fromUnixTimestamp64Milli(minIf(ts, event_type = 'image_uploaded'), 'UTC')) AS day,
        windowFunnel({window_s:UInt64} * 1000)(
            ts,
            event_type = 'image_uploaded',
            event_type = 'tool_selected',
            event_type = 'inference_requested',
            event_type = 'image_saved',
            event_type = 'score_submitted'
        ) AS level
    FROM
    (
        -- A key that is not Nullable (the rows without an input_id are filtered out) groups at
        -- about half the cost.
        SELECT assumeNotNull(input_id) AS image, event_type, toUInt64(toUnixTimestamp64Milli(event_ts)) AS ts
        FROM events
        WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
          AND input_id IS NOT NULL
          AND event_type IN ('image_uploaded', 'tool_selected', 'inference_requested', 'image_saved', 'score_submitted')
    )
    GROUP BY image
    HAVING level >= 1
)
GROUP BY day
ORDER BY day
