-- Task time per image as a distribution (docs/analytics-definitions.md, "Task time"): the saved
-- images of task_time_images (first tool click in [from, to), task time capped by task_durations)
-- counted per group in fixed log-spaced bins, the bins of funnel_ttc_histogram: bin 0 is [0, 1) s,
-- bin b >= 1 is [2^(b-1), 2^b) s (b is the bit length of the whole seconds). dimension 'tool': the
-- image's first tool; 'variant': its arm in experiment {experiment} (images of no clean unit left
-- out). Only bins with images have rows.
SELECT
    {dimension:String} AS dimension,
    `group`,
    bin,
    if(bin = 0, 0, pow(2, bin - 1)) AS bin_start_s,
    pow(2, bin) AS bin_end_s,
    count() AS images
FROM
(
    SELECT
        if({dimension:String} = 'variant', variant, tool) AS `group`,
        toUInt8(if(diff_second < 1, 0, 1 + floor(log2(floor(diff_second))))) AS bin
    FROM task_time_images(
        experiment_key = {experiment:String},
        range_start = {from:DateTime64(3, 'UTC')},
        range_end = {to:DateTime64(3, 'UTC')}
    )
    WHERE diff_second IS NOT NULL AND ({dimension:String} != 'variant' OR variant != '')
)
GROUP BY `group`, bin
ORDER BY `group`, bin
