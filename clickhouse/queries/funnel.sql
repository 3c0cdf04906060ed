-- Funnel (docs/analytics-definitions.md, "Funnels"): units reaching each step, in order, within
-- {window_s} seconds of an entry, broken down by {breakdown}.
-- unit: 'input_id' (image), 'anonymous_id' (device) or 'session_id'.
-- breakdown: 'none', 'tool', 'inference_type', 'variant' (of experiment {experiment}), 'day', 'source',
-- 'browser', 'os', 'device', 'size'. Steps are event types; '' ends the funnel early. {exclude}: units
-- with that event in [from, to + window) are left out ('' = none). filter_*: '' = any.
-- Entry: a step-1 event in [from, to); later steps are read up to to + window, so a conversion that
-- finishes after `to` counts (whether to + window is past yet is the caller's `complete`).
-- Units, levels and breakdown values are the view funnel_units' (migration 0011: level by
-- windowFunnel, conversion path, breakdown value, filters); this file counts them per step.
-- This file and funnel_strict.sql differ only in these comments: {mode} picks the view's mode.
WITH
    [{step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}] AS steps,
    length(arrayFilter(s -> s != '', steps)) AS step_count
SELECT
    breakdown,
    step,
    steps[step] AS step_name,
    units,
    first_value(units) OVER w AS entered,
    lagInFrame(units, 1, units) OVER w AS previous,
    if(entered = 0, 0, units / entered) AS conversion,
    if(previous = 0, 0, units / previous) AS step_conversion,
    previous - units AS dropped
FROM
(
    SELECT
        breakdown,
        [countIf(level >= 1), countIf(level >= 2), countIf(level >= 3), countIf(level >= 4), countIf(level >= 5)]
            AS reached
    FROM funnel_units(
        step1 = {step1:String}, step2 = {step2:String}, step3 = {step3:String}, step4 = {step4:String},
        step5 = {step5:String}, from = {from:DateTime64(3, 'UTC')}, to = {to:DateTime64(3, 'UTC')},
        window_s = {window_s:UInt64}, unit = {unit:String}, breakdown = {breakdown:String},
        experiment = {experiment:String}, exclude = {exclude:String}, mode = {mode:String},
        filter_tool = {filter_tool:String}, filter_inference_type = {filter_inference_type:String},
        filter_variant = {filter_variant:String}, filter_source = {filter_source:String},
        filter_browser = {filter_browser:String}, filter_os = {filter_os:String},
        filter_device = {filter_device:String}, filter_size = {filter_size:String})
    GROUP BY breakdown
)
ARRAY JOIN reached AS units, arrayEnumerate(reached) AS step
WHERE step <= step_count
WINDOW w AS (PARTITION BY breakdown ORDER BY step ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY breakdown, step
