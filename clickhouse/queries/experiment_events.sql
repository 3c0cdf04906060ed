-- Experiment analysis input: every funnel event and exposure of the units exposed to one
-- experiment inside the analysed window (the current phase). The analysis itself keeps only each
-- unit's events after its own first exposure and drops units seen in more than one variant.
-- FINAL collapses re-sent events that the ReplacingMergeTree has not merged yet.
SELECT
    toString(event_id) AS event_id,
    toString(event_type) AS event_type,
    anonymous_id,
    user_id,
    toString(input_id) AS input_id,
    event_ts,
    toString(experiment_key) AS experiment_key,
    toString(variant) AS variant,
    nullIf(toString(experiments[{experiment_key:String}]), '') AS experiment_variant,
    toNullable(toFloat64(score)) AS score,
    funnel_step
FROM events FINAL
WHERE event_ts >= {from:DateTime64(3, 'UTC')}
  AND event_ts < {to:DateTime64(3, 'UTC')}
  AND event_type IN ('experiment_exposure', 'image_uploaded', 'tool_selected', 'inference_requested',
                     'image_saved', 'score_submitted')
  AND anonymous_id IN (
      SELECT anonymous_id
      FROM events
      WHERE event_type = 'experiment_exposure'
        AND experiment_key = {experiment_key:String}
        AND event_ts >= {from:DateTime64(3, 'UTC')}
        AND event_ts < {to:DateTime64(3, 'UTC')}
  )
ORDER BY anonymous_id, event_ts
