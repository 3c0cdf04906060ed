-- Recent traffic's events for planning: what experiment_events returns for an experiment, for the
-- units of traffic_units (every device with a funnel step in [from, to), arm control_key): their
-- funnel events and inference results in [from, to). Only an inference result of a request made
-- before from can precede its unit's first step; planning reads rates, so no join removes it.
-- status: 'succeeded' or 'failed' on inference_completed, NULL on the other kinds.
SELECT
    anonymous_id,
    {control_key:String} AS variant,
    toString(event_type) AS event_type,
    event_ts,
    toString(input_id) AS input_id,
    toNullable(toFloat64(score)) AS score,
    CAST(status, 'Nullable(String)') AS status
FROM events FINAL
WHERE event_type IN ('image_uploaded', 'tool_selected', 'inference_requested', 'inference_completed',
                     'image_saved', 'score_submitted')
    AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
    AND anonymous_id IN
    (
        SELECT anonymous_id
        FROM events
        WHERE event_type IN ('image_uploaded', 'tool_selected', 'inference_requested', 'image_saved', 'score_submitted')
            AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
    )
ORDER BY anonymous_id, event_ts, event_type
