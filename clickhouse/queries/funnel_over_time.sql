-- Conversion over time (docs/analytics-definitions.md, "Conversion over time"): the units of the
-- view funnel_units (migration 0011) by the {interval} ('hour' | 'day', UTC) of their entry (the
-- conversion path's step-1 time), and per bucket and step the units with level >= step and
-- conversion = units / the bucket's entered units. A bucket is complete once min(bucket end, to)
-- + window is past: no late step can change it any more. Only buckets with an entry have rows.
-- The breakdown only picks the units (with a variant breakdown: exposed units); it is not a column.
WITH
    [{step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}] AS steps,
    length(arrayFilter(s -> s != '', steps)) AS step_count
SELECT
    bucket,
    step,
    steps[step] AS step_name,
    units,
    if(reached[1] = 0, 0, units / reached[1]) AS conversion,
    toBool(least(if({interval:String} = 'hour', bucket + toIntervalHour(1), bucket + toIntervalDay(1)),
                 {to:DateTime64(3, 'UTC')}) + toIntervalSecond({window_s:UInt64}) <= now64(3, 'UTC')) AS complete
FROM
(
    SELECT
        toDateTime64(if({interval:String} = 'hour', toStartOfHour(entered_at), toStartOfDay(entered_at)), 0, 'UTC')
            AS bucket,
        [countIf(level >= 1), countIf(level >= 2), countIf(level >= 3), countIf(level >= 4), countIf(level >= 5)]
            AS reached
    FROM
    (
        SELECT level, toDateTime(intDiv(path[1], 1000), 'UTC') AS entered_at
        FROM funnel_units(
            step1 = {step1:String}, step2 = {step2:String}, step3 = {step3:String}, step4 = {step4:String},
            step5 = {step5:String}, from = {from:DateTime64(3, 'UTC')}, to = {to:DateTime64(3, 'UTC')},
            window_s = {window_s:UInt64}, unit = {unit:String}, breakdown = {breakdown:String},
            experiment = {experiment:String}, exclude = {exclude:String}, mode = {mode:String},
            filter_tool = {filter_tool:String}, filter_inference_type = {filter_inference_type:String},
            filter_variant = {filter_variant:String}, filter_source = {filter_source:String},
            filter_browser = {filter_browser:String}, filter_os = {filter_os:String},
            filter_device = {filter_device:String}, filter_size = {filter_size:String})
    )
    GROUP BY bucket
)
ARRAY JOIN reached AS units, arrayEnumerate(reached) AS step
WHERE step <= step_count
ORDER BY bucket, step
