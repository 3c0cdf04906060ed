-- Task time (seconds from the first tool click to the save, per image) with P50/P90/P99, by
-- 'none', 'tool' (first tool clicked), 'variant' (of experiment {experiment}) or 'day'.
SELECT
    breakdown,
    count() AS images,
    countIf(diff_second IS NOT NULL) AS saved_images,
    round(avg(diff_second), 3) AS mean_s,
    round(quantileExact(0.5)(diff_second), 3) AS p50_s,
    round(quantileExact(0.9)(diff_second), 3) AS p90_s,
    round(quantileExact(0.99)(diff_second), 3) AS p99_s
FROM
(
    SELECT
        d.input_id,
        d.diff_second,
        multiIf(
            {breakdown:String} = 'tool', ifNull(b.first_tool, '(none)'),
            {breakdown:String} = 'variant', if(empty(b.assignment), '(none)', b.assignment),
            {breakdown:String} = 'day', toString(toDate(d.first_tool_click_at)),
            'all'
        ) AS breakdown
    FROM task_durations AS d
    LEFT JOIN
    (
        SELECT
            assumeNotNull(input_id) AS input_id,
            argMinIf(toString(tool_name), event_ts, event_type = 'tool_selected' AND tool_name IS NOT NULL)
                AS first_tool,
            argMinIf(toString(experiments[{experiment:String}]), event_ts, experiments[{experiment:String}] != '')
                AS assignment
        FROM events
        WHERE input_id IS NOT NULL AND event_type = 'tool_selected'
        GROUP BY input_id
    ) AS b ON b.input_id = d.input_id
    WHERE d.first_tool_click_at >= {from:DateTime64(3, 'UTC')} AND d.first_tool_click_at < {to:DateTime64(3, 'UTC')}
)
GROUP BY breakdown
ORDER BY breakdown
