-- QA: funnel steps whose earlier step never arrived: a tool click, inference or save on an image
-- nobody uploaded, a save of a job that was never inferred, a score of a job never saved.
-- Earlier steps are looked up from lookback_days before the window, so a journey crossing the
-- window's start is not an orphan while the lookup stays bounded.
WITH
    uploaded AS (
        SELECT DISTINCT input_id FROM events FINAL
        WHERE event_type = 'image_uploaded' AND input_id IS NOT NULL AND event_ts < {to:DateTime64(3, 'UTC')}
            AND event_ts >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback_days:UInt16})
    ),
    inferred AS (
        SELECT DISTINCT job_id FROM events FINAL
        WHERE event_type IN ('inference_requested', 'inference_completed') AND job_id IS NOT NULL
            AND event_ts < {to:DateTime64(3, 'UTC')}
            AND event_ts >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback_days:UInt16})
    ),
    saved AS (
        SELECT DISTINCT job_id FROM events FINAL
        WHERE event_type = 'image_saved' AND job_id IS NOT NULL AND event_ts < {to:DateTime64(3, 'UTC')}
            AND event_ts >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback_days:UInt16})
    ),
    steps AS (
        SELECT toString(event_type) AS step, event_id, input_id, job_id FROM events FINAL
        WHERE event_type IN ('tool_selected', 'segments_proposed', 'inference_requested', 'inference_completed',
                             'image_saved', 'score_submitted')
            AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
    ),
    findings AS (
        SELECT
            concat(step, ' without an upload of its image') AS subject,
            input_id IS NULL OR input_id NOT IN (SELECT input_id FROM uploaded) AS orphan,
            event_id
        FROM steps
        UNION ALL
        SELECT
            'image_saved without an inference of its job' AS subject,
            job_id IS NULL OR job_id NOT IN (SELECT job_id FROM inferred) AS orphan,
            event_id
        FROM steps WHERE step = 'image_saved'
        UNION ALL
        SELECT
            'score_submitted without a save of its job' AS subject,
            job_id IS NULL OR job_id NOT IN (SELECT job_id FROM saved) AS orphan,
            event_id
        FROM steps WHERE step = 'score_submitted'
    )
SELECT
    subject,
    toFloat64(countIf(orphan) / count()) AS value,
    toUInt64(countIf(orphan)) AS affected,
    toUInt64(count()) AS total,
    if(countIf(orphan) > 0, concat('e.g. event_id ', toString(minIf(event_id, orphan))), '') AS detail
FROM findings
GROUP BY subject
ORDER BY value DESC, subject
