-- QA: inference requests with no completion (success or failure) for their job, per inference.
-- Requests younger than the grace period are not judged: their job may still be running.
WITH
    completed AS (
        SELECT DISTINCT job_id FROM events FINAL
        WHERE event_type = 'inference_completed' AND job_id IS NOT NULL
            AND event_ts >= {from:DateTime64(3, 'UTC')} - INTERVAL 1 HOUR
    )
SELECT
    concat('inference_requested ', name, ' without inference_completed') AS subject,
    toFloat64(countIf(missing) / count()) AS value,
    toUInt64(countIf(missing)) AS affected,
    toUInt64(count()) AS total,
    if(affected > 0, concat('e.g. job_id ', toString(minIf(job_id, missing))), '') AS detail
FROM (
    SELECT
        ifNull(inference_name, concat('inference_id ', toString(inference_id))) AS name,
        job_id,
        job_id IS NULL OR job_id NOT IN (SELECT job_id FROM completed) AS missing
    FROM events FINAL
    WHERE event_type = 'inference_requested'
        AND event_ts >= {from:DateTime64(3, 'UTC')}
        AND event_ts < {to:DateTime64(3, 'UTC')} - toIntervalSecond({grace_s:UInt32})
)
GROUP BY name
ORDER BY value DESC, subject
