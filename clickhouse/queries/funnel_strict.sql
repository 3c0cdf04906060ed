-- Strict funnel (docs/analytics-definitions.md, "Funnels", strict mode): as funnel.sql, but after the
-- unit's first entry the chain stops at the first event of a listed type that is neither the next
-- step, nor a repeat of a step already reached, nor a new entry (windowFunnel 'strict_order').
-- Step-1 events that are no entry (outside [from, to), or before a variant unit's first exposure)
-- break no chain; a unit with an event of the excluded type is left out anyway.
-- Entries in [from, to); later steps read up to to + window. Units, levels and breakdown values are
-- the view funnel_units' (migration 0011) in mode 'strict'; this file counts them per step.
-- This file and funnel.sql differ only in these comments: {mode} picks the view's mode.
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
