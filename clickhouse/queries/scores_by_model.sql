-- Scores by inference type and model version: each score (one per score event, duplicates
-- collapsed by event_id) joined to the completed inference of its job.
SELECT
    ifNull(i.inference_type, '(unknown)') AS inference_type,
    ifNull(i.model_version, '(unknown)') AS model_version,
    count() AS scores,
    round(avg(s.given_score), 4) AS mean_score,
    countIf(s.given_score >= 4) AS good_scores,
    round(countIf(s.given_score >= 4) / count(), 4) AS good_share
FROM
(
    SELECT event_id, any(job_id) AS scored_job_id, any(score) AS given_score
    FROM events FINAL
    WHERE event_type = 'score_submitted' AND score IS NOT NULL
      AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
    GROUP BY event_id
) AS s
LEFT JOIN
(
    SELECT
        job_id,
        argMax(toString(inference_type), event_ts) AS inference_type,
        argMax(toString(model_version), event_ts) AS model_version
    FROM events FINAL
    WHERE event_type = 'inference_completed' AND job_id IS NOT NULL
    GROUP BY job_id
) AS i ON i.job_id = s.scored_job_id
GROUP BY inference_type, model_version
ORDER BY inference_type, model_version
SETTINGS join_use_nulls = 1
