-- The latest result of every data-quality check, as `funnelstream qa run` records them in
-- qa_results (one row per check per run): errors first, then failures, then passes, by check.
-- age_s: how long before {now} that check last ran.
SELECT *
FROM
(
    SELECT
        check_name,
        severity,
        status,
        value,
        threshold,
        subject,
        affected,
        total,
        failing_subjects,
        run_at,
        toFloat64(dateDiff('millisecond', run_at, {now:DateTime64(3, 'UTC')}) / 1000) AS age_s,
        window_from,
        window_to,
        duration_ms,
        toString(run_id) AS run_id,
        details
    FROM qa_results
    ORDER BY check_name, run_at DESC
    LIMIT 1 BY check_name
)
ORDER BY indexOf(['error', 'fail', 'pass'], status), check_name
