-- Retraining pairs of a date range (the seed's "Target Date" SELECT): every succeeded inference whose
-- result was produced in [from, to), with its input image (Table 1), mask and result (Table 3) and the
-- user's score when one was given, joined by input_id and job_id. Optional filters are NULL when unset.
-- Replayed events collapse here: each CTE groups by its key, so duplicates before a merge count once.
-- Aliases inside the CTEs never reuse a column name: ClickHouse would substitute them in WHERE.
-- A result without its upload, request or score carries NULL there (join_use_nulls), not the
-- column type's default (1970-01-01, 0): the manifest must not show a time that never happened.
-- Reads events FINAL: the first received copy of a resent event counts.
WITH
    results AS (
        SELECT
            assumeNotNull(job_id) AS result_job_id,
            any(assumeNotNull(input_id)) AS result_input_id,
            argMax(inference_url, event_ts) AS result_url,
            argMax(mask_url, event_ts) AS result_mask_url,
            argMax(model_name, event_ts) AS result_model_name,
            argMax(model_version, event_ts) AS result_model_version,
            any(inference_id) AS result_inference_id,
            any(inference_name) AS result_inference_name,
            any(inference_type) AS result_inference_type,
            any(nullIf(JSONExtractString(properties, 'input_url'), '')) AS job_input_url,
            max(event_ts) AS completed_at
        FROM events FINAL
        WHERE event_type = 'inference_completed'
            AND status = 'succeeded'
            AND job_id IS NOT NULL
            AND input_id IS NOT NULL
            AND event_ts >= {from:DateTime64(3, 'UTC')}
            AND event_ts < {to:DateTime64(3, 'UTC')}
        GROUP BY result_job_id
    ),
    uploads AS (
        SELECT
            assumeNotNull(input_id) AS upload_input_id,
            any(input_url) AS upload_url,
            any(width) AS upload_width,
            any(height) AS upload_height,
            min(event_ts) AS uploaded_at
        FROM events FINAL
        WHERE event_type = 'image_uploaded' AND input_id IN (SELECT result_input_id FROM results)
        GROUP BY upload_input_id
    ),
    requests AS (
        SELECT assumeNotNull(job_id) AS request_job_id, min(event_ts) AS requested_at
        FROM events FINAL
        WHERE event_type = 'inference_requested' AND job_id IN (SELECT result_job_id FROM results)
        GROUP BY request_job_id
    ),
    rated AS (
        SELECT assumeNotNull(job_id) AS rated_job_id, argMax(score, event_ts) AS rated_score, max(event_ts) AS scored_at
        FROM events FINAL
        WHERE event_type = 'score_submitted' AND job_id IN (SELECT result_job_id FROM results)
        GROUP BY rated_job_id
    )
SELECT
    toString(result_job_id) AS job_id,
    toString(result_input_id) AS input_id,
    coalesce(upload_url, job_input_url) AS input_url,
    result_mask_url AS mask_url,
    result_url,
    rated_score AS score,
    result_inference_id AS inference_id,
    result_inference_name AS inference_name,
    result_inference_type AS inference_type,
    result_model_name AS model_name,
    result_model_version AS model_version,
    upload_width AS width,
    upload_height AS height,
    uploaded_at,
    requested_at,
    completed_at,
    scored_at
FROM results
LEFT JOIN uploads ON upload_input_id = result_input_id
LEFT JOIN requests ON request_job_id = result_job_id
LEFT JOIN rated ON rated_job_id = result_job_id
WHERE ({min_score:Nullable(UInt8)} IS NULL OR rated_score >= {min_score:Nullable(UInt8)})
    AND ({inference_type:Nullable(String)} IS NULL OR result_inference_type = {inference_type:Nullable(String)})
    AND ({model_version:Nullable(String)} IS NULL OR result_model_version = {model_version:Nullable(String)})
ORDER BY completed_at, job_id
SETTINGS join_use_nulls = 1
