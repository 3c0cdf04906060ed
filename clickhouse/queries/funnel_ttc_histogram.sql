-- Time to convert as a distribution (docs/analytics-definitions.md, "Time to convert"): for each
-- unit of the view funnel_units (migration 0011) with level >= k, k >= 2, the seconds
-- t_k - t_{k-1} along its conversion path, counted in fixed log-spaced bins: bin 0 is [0, 1) s,
-- bin b >= 1 is [2^(b-1), 2^b) s (b is the bit length of the whole seconds). Only bins with units
-- have rows. p50_s and p90_s (the step's, on every row of it) are time_to_convert.sql's: the
-- lower quantile (inverted CDF) of the same seconds. All breakdown values together.
WITH
    [{step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}] AS steps
SELECT
    step,
    steps[step] AS step_name,
    bin,
    if(bin = 0, 0, pow(2, bin - 1)) AS bin_start_s,
    pow(2, bin) AS bin_end_s,
    units,
    p50_s,
    p90_s
FROM
(
    SELECT
        step,
        round(quantileExactWeighted(0.5)(seconds, 1), 3) AS p50_s,
        round(quantileExactWeighted(0.9)(seconds, 1), 3) AS p90_s,
        -- Per step one map bin -> units: the bins come out of the same pass as the quantiles.
        sumMap([toUInt8(if(whole < 1, 0, 1 + floor(log2(whole))))], [toUInt64(1)]) AS bins
    FROM
    (
        SELECT step, (path[step] - path[step - 1]) / 1000 AS seconds, intDiv(path[step] - path[step - 1], 1000) AS whole
        FROM funnel_units(
            step1 = {step1:String}, step2 = {step2:String}, step3 = {step3:String}, step4 = {step4:String},
            step5 = {step5:String}, from = {from:DateTime64(3, 'UTC')}, to = {to:DateTime64(3, 'UTC')},
            window_s = {window_s:UInt64}, unit = {unit:String}, breakdown = {breakdown:String},
            experiment = {experiment:String}, exclude = {exclude:String}, mode = {mode:String},
            filter_tool = {filter_tool:String}, filter_inference_type = {filter_inference_type:String},
            filter_variant = {filter_variant:String}, filter_source = {filter_source:String},
            filter_browser = {filter_browser:String}, filter_os = {filter_os:String},
            filter_device = {filter_device:String}, filter_size = {filter_size:String})
        ARRAY JOIN arrayEnumerate(path) AS step
        WHERE step >= 2 AND step <= level
    )
    GROUP BY step
)
ARRAY JOIN bins.1 AS bin, bins.2 AS units
ORDER BY step, bin
