-- Task time per image (the task_durations view: first tool click to the save of an inferred result,
-- capped at TASK_TIME_CAP_S; an image over the cap counts as one without a saved result) with the
-- mean and P50/P90/P99 of the saved ones, for images whose first tool click is in [from, to), by
-- 'none', 'tool' (the first tool clicked; the smallest name on a tie), 'day' (UTC day of the first
-- tool click) or 'variant': the arm of experiment {experiment}'s clean units, read from
-- experiment_task_durations over the same [from, to), which the experiment analysis reads too, so
-- both count the same images (contaminated units and clicks before a unit's exposure left out).
-- Quantiles: the lower inverted-CDF quantile (docs/analytics-definitions.md, "Quantiles"), the
-- smallest value with at least a share q of the values at or below it. quantileExactWeighted with
-- weight 1 is that for every level; quantileExactLow is not (it gives the 10th of 10 values for
-- P90, not the 9th).
SELECT
    breakdown,
    count() AS images,
    countIf(diff_second IS NOT NULL) AS saved_images,
    round(avg(diff_second), 3) AS mean_s,
    round(quantileExactWeighted(0.5)(diff_second, 1), 3) AS p50_s,
    round(quantileExactWeighted(0.9)(diff_second, 1), 3) AS p90_s,
    round(quantileExactWeighted(0.99)(diff_second, 1), 3) AS p99_s
FROM
(
    SELECT
        d.diff_second AS diff_second,
        multiIf(
            {breakdown:String} = 'tool', if(empty(t.first_tool), '(none)', t.first_tool),
            {breakdown:String} = 'day', toString(toDate(d.first_tool_click_at)),
            'all'
        ) AS breakdown
    FROM task_durations AS d
    LEFT JOIN
    (
        -- Only read for the tool breakdown; the condition folds to a constant.
        SELECT
            assumeNotNull(input_id) AS tool_input_id,
            argMin(toString(tool_name), (event_ts, toString(tool_name))) AS first_tool
        FROM events FINAL
        WHERE {breakdown:String} = 'tool' AND input_id IS NOT NULL AND event_type = 'tool_selected'
            AND tool_name IS NOT NULL
        GROUP BY tool_input_id
    ) AS t ON t.tool_input_id = d.input_id
    WHERE {breakdown:String} != 'variant'
        AND d.first_tool_click_at >= {from:DateTime64(3, 'UTC')} AND d.first_tool_click_at < {to:DateTime64(3, 'UTC')}
    UNION ALL
    SELECT diff_second, variant AS breakdown
    FROM experiment_task_durations(
        experiment_key = {experiment:String},
        range_start = {from:DateTime64(3, 'UTC')},
        range_end = {to:DateTime64(3, 'UTC')}
    )
    WHERE {breakdown:String} = 'variant'
)
GROUP BY breakdown
ORDER BY breakdown
