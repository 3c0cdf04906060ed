-- What drives drop-off at step {step} (docs/analytics-definitions.md, "Drop-off correlation"):
-- among the units of the view funnel_units (migration 0011) that reached step {step} - 1, the
-- converted (level >= {step}) and the dropped (level = {step} - 1), and per property the units of
-- each that have it and that have not. A unit has a property when one of its events (any type but
-- pipeline_heartbeat, no funnel filter) from its entry on, before its step-{step} time if converted
-- or at most the window after its entry if dropped, carries it: kind 'dimension': tool,
-- inference_type, source, browser, os, device, size (of an upload's width x height: small under
-- 1 MP, medium to under 4 MP, large from 4 MP on, as the view's size filter) and variant (the
-- event's arm of {experiment}); kind 'event': property 'event_type', any type that is not a step
-- of the funnel. Properties with fewer than {min_count} units (converted + dropped) are left out.
-- The statistics (odds ratio, p-value, significance) are computed from these counts in Python.
-- Events are read once (FINAL) and probed against the units; the unit key is the view's.
WITH
    [{step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}] AS steps
SELECT
    kind,
    property,
    value,
    converted,
    dropped,
    all_converted - converted AS converted_without,
    all_dropped - dropped AS dropped_without
FROM
(
    SELECT
        kind,
        property,
        value,
        converted,
        dropped,
        -- The row of kind '' counts every unit at the step: each joined row carries it.
        anyIf(converted, kind = '') OVER () AS all_converted,
        anyIf(dropped, kind = '') OVER () AS all_dropped
    FROM
    (
        -- Distinct units per property, not distinct properties per unit: one set of unit keys per
        -- property holds far less than a set of values per unit, so a month of events fits the
        -- analyst sessions' memory limit.
        SELECT
            property_of.1 AS kind,
            property_of.2 AS property,
            property_of.3 AS value,
            uniqExactIf(unit, is_converted) AS converted,
            uniqExactIf(unit, NOT is_converted) AS dropped
        FROM
        (
            SELECT
                reached.unit AS unit,
                reached.converted AS is_converted,
                -- The unit's observation span: from its entry, to its step-{step} time or past its window.
                seen.ts >= reached.entered_at AND seen.ts < reached.until AS in_span,
                -- The event's properties (NULL and '' are no value), after the row that counts the unit.
                arrayConcat([('', '', '')], if(in_span, arrayMap(p -> (p.1, p.2, p.3), arrayFilter(p -> p.4, [
                    ('dimension', 'tool', toString(ifNull(seen.tool_name, '')), seen.tool_name IS NOT NULL),
                    ('dimension', 'inference_type', toString(ifNull(seen.inference_type, '')),
                     seen.inference_type IS NOT NULL),
                    ('dimension', 'source', toString(seen.source), seen.source != ''),
                    ('dimension', 'browser', toString(ifNull(seen.browser, '')), seen.browser IS NOT NULL),
                    ('dimension', 'os', toString(ifNull(seen.os, '')), seen.os IS NOT NULL),
                    ('dimension', 'device', toString(ifNull(seen.device, '')), seen.device IS NOT NULL),
                    ('dimension', 'size', seen.size, seen.size != ''),
                    ('dimension', 'variant', seen.arm, seen.arm != ''),
                    ('event', 'event_type', toString(seen.event_type), NOT has(steps, seen.event_type))
                ])), [])) AS properties
            FROM
            (
                SELECT
                    if({unit:String} = 'input_id', cityHash64(assumeNotNull(input_id)), 0)
                        + if({unit:String} = 'session_id', cityHash64(session_id), 0)
                        + if({unit:String} NOT IN ('input_id', 'session_id'), cityHash64(anonymous_id), 0) AS unit,
                    toUInt64(toUnixTimestamp64Milli(event_ts)) AS ts,
                    tool_name,
                    inference_type,
                    source,
                    browser,
                    os,
                    device,
                    multiIf(width IS NULL OR height IS NULL, '',
                            toUInt64(width) * height < 1000000, 'small',
                            toUInt64(width) * height < 4000000, 'medium', 'large') AS size,
                    if({experiment:String} = '', '', toString(experiments[{experiment:String}])) AS arm,
                    event_type
                FROM events FINAL
                WHERE event_ts >= {from:DateTime64(3, 'UTC')}
                  AND event_ts < {to:DateTime64(3, 'UTC')} + toIntervalSecond({window_s:UInt64})
                  AND event_type != 'pipeline_heartbeat'
                  AND ({unit:String} != 'input_id' OR input_id IS NOT NULL)
            ) AS seen
            -- Every unit that reached the step before stays, with or without a property.
            RIGHT JOIN
            (
                SELECT
                    unit,
                    level >= {step:UInt8} AS converted,
                    path[1] AS entered_at,
                    if(converted, path[{step:UInt8}], path[1] + {window_s:UInt64} * 1000 + 1) AS until
                FROM funnel_units(
                    step1 = {step1:String}, step2 = {step2:String}, step3 = {step3:String},
                    step4 = {step4:String}, step5 = {step5:String}, from = {from:DateTime64(3, 'UTC')},
                    to = {to:DateTime64(3, 'UTC')}, window_s = {window_s:UInt64}, unit = {unit:String},
                    breakdown = {breakdown:String}, experiment = {experiment:String}, exclude = {exclude:String},
                    mode = {mode:String}, filter_tool = {filter_tool:String},
                    filter_inference_type = {filter_inference_type:String}, filter_variant = {filter_variant:String},
                    filter_source = {filter_source:String}, filter_browser = {filter_browser:String},
                    filter_os = {filter_os:String}, filter_device = {filter_device:String},
                    filter_size = {filter_size:String})
                WHERE level >= {step:UInt8} - 1
            ) AS reached ON seen.unit = reached.unit
        )
        ARRAY JOIN properties AS property_of
        GROUP BY kind, property, value
    )
)
WHERE kind != '' AND converted + dropped >= {min_count:UInt64}
ORDER BY kind, property, value
