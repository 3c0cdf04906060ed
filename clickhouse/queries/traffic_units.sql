-- Recent traffic as the units of a planned experiment's single arm (docs/analytics-definitions.md,
-- "Experiment engine", planning): one row per device with a funnel step (upload, tool,
-- inference request, save, score) in [from, to), in the arm control_key, first "exposed" at its
-- first such event, never contaminated. The same columns as experiment_units.
SELECT
    anonymous_id,
    {control_key:String} AS variant,
    min(event_ts) AS first_exposure_at,
    false AS contaminated
FROM events FINAL
WHERE event_type IN ('image_uploaded', 'tool_selected', 'inference_requested', 'image_saved', 'score_submitted')
    AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
GROUP BY anonymous_id
ORDER BY anonymous_id
