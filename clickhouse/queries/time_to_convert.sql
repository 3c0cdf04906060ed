-- Time to convert (docs/analytics-definitions.md, "Funnels"): for each unit with level >= k,
-- t_k - t_{k-1} and t_k - t_1 in seconds along its conversion path, with the mean and the lower
-- quantiles (inverted CDF: quantileExactWeighted(q)(x, 1)) P50/P90/P99, by {breakdown}.
-- Units, entries, level, conversion path and breakdown value are funnel.sql's: both read the view
-- funnel_units (migration 0011, mode 'ordered'), so step k here counts exactly the units funnel.sql
-- counts at step k. Entries in [from, to); later steps read up to to + window.
WITH
    [{step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}] AS steps
SELECT
    breakdown,
    step,
    steps[step] AS step_name,
    count() AS units,
    round(avg(from_previous_s), 3) AS mean_s,
    round(quantileExactWeighted(0.5)(from_previous_s, 1), 3) AS p50_s,
    round(quantileExactWeighted(0.9)(from_previous_s, 1), 3) AS p90_s,
    round(quantileExactWeighted(0.99)(from_previous_s, 1), 3) AS p99_s,
    round(quantileExactWeighted(0.5)(from_first_s, 1), 3) AS p50_from_first_s
FROM
(
    SELECT
        breakdown,
        step,
        (path[step] - path[step - 1]) / 1000 AS from_previous_s,
        (path[step] - path[1]) / 1000 AS from_first_s
    FROM funnel_units(
        step1 = {step1:String}, step2 = {step2:String}, step3 = {step3:String}, step4 = {step4:String},
        step5 = {step5:String}, from = {from:DateTime64(3, 'UTC')}, to = {to:DateTime64(3, 'UTC')},
        window_s = {window_s:UInt64}, unit = {unit:String}, breakdown = {breakdown:String},
        experiment = {experiment:String}, exclude = {exclude:String}, mode = 'ordered',
        filter_tool = {filter_tool:String}, filter_inference_type = {filter_inference_type:String},
        filter_variant = {filter_variant:String}, filter_source = {filter_source:String},
        filter_browser = {filter_browser:String}, filter_os = {filter_os:String},
        filter_device = {filter_device:String}, filter_size = {filter_size:String})
    ARRAY JOIN arrayEnumerate(path) AS step
    WHERE step >= 2 AND step <= level
)
GROUP BY breakdown, step
ORDER BY breakdown, step
