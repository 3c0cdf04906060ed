-- Task time by day (docs/analytics-definitions.md, "Task time"): per UTC day of the first tool click
-- and group, the images of task_time_images in [from, to), those with a counted task time, and the
-- mean and P50/P90 of their seconds. dimension 'none': one group 'all'; 'tool': the image's first
-- tool; 'variant': its arm in experiment {experiment} (images of no clean unit left out), so a day's
-- numbers per group are task_time_summary's for that day. Quantiles: the lower inverted-CDF quantile
-- (docs/analytics-definitions.md, "Quantiles"), quantileExactWeighted with weight 1, as
-- task_time_summary's.
SELECT
    toDate(first_tool_click_at) AS day,
    `group`,
    count() AS images,
    countIf(diff_second IS NOT NULL) AS saved_images,
    round(avg(diff_second), 3) AS mean_s,
    round(quantileExactWeighted(0.5)(diff_second, 1), 3) AS p50_s,
    round(quantileExactWeighted(0.9)(diff_second, 1), 3) AS p90_s
FROM
(
    SELECT
        first_tool_click_at,
        diff_second,
        multiIf({dimension:String} = 'variant', variant, {dimension:String} = 'tool', tool, 'all') AS `group`
    FROM task_time_images(
        experiment_key = {experiment:String},
        range_start = {from:DateTime64(3, 'UTC')},
        range_end = {to:DateTime64(3, 'UTC')}
    )
    WHERE {dimension:String} != 'variant' OR variant != ''
)
GROUP BY day, `group`
ORDER BY day, `group`
