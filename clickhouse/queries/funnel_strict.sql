-- Strict funnel: as funnel.sql, but a unit stops at the first event of another listed type between
-- two steps (windowFunnel strict_order). Reads events FINAL: a duplicate would break the chain.
-- unit: 'input_id' (image), 'anonymous_id' (device) or 'session_id'.
-- breakdown: 'none', 'tool', 'inference_type', 'variant' (of experiment {experiment}),
--            'day' (of the unit's first step), 'source'.
-- Steps are event types; '' ends the funnel early. {exclude}: units with that event in the range
-- are left out ('' = none).
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
    FROM
    (
        SELECT
            unit,
            windowFunnel({window_s:UInt64} * 1000, 'strict_order')(
                ts,
                event_type = {step1:String},
                event_type = {step2:String},
                event_type = {step3:String},
                event_type = {step4:String},
                event_type = {step5:String}
            ) AS level,
            if(empty(first_breakdown), '(none)', first_breakdown) AS breakdown,
            argMinIf(breakdown_value, ts, breakdown_value != '') AS first_breakdown
        FROM
        (
            SELECT
                -- One if() per unit, summed: each folds to its branch or 0 at planning, so only the
                -- chosen column is read and hashed. The key is not Nullable (assumeNotNull: rows
                -- without an input_id are filtered below), which halves the cost of the GROUP BY.
                if({unit:String} = 'input_id', cityHash64(assumeNotNull(input_id)), 0)
                    + if({unit:String} = 'session_id', cityHash64(session_id), 0)
                    + if({unit:String} NOT IN ('input_id', 'session_id'), cityHash64(anonymous_id), 0) AS unit,
                toUInt64(toUnixTimestamp64Milli(event_ts)) AS ts,
                event_type,
                -- As for the unit: only the chosen breakdown survives planning (concat of '' and it).
                concat(
                    if({breakdown:String} = 'tool',
                       if(event_type = 'tool_selected', ifNull(toString(tool_name), ''), ''), ''),
                    if({breakdown:String} = 'inference_type',
                       if(event_type IN ('inference_requested', 'inference_completed'),
                          ifNull(toString(inference_type), ''), ''), ''),
                    -- The map's key and value arrays: a lookup there costs half of experiments[key].
                    if({breakdown:String} = 'variant',
                       toString(experiments.values[indexOf(experiments.keys, {experiment:String})]), ''),
                    if({breakdown:String} = 'day', toString(toDate(event_ts)), ''),
                    if({breakdown:String} = 'source', toString(source), ''),
                    if({breakdown:String} NOT IN ('tool', 'inference_type', 'variant', 'day', 'source'), 'all', '')
                ) AS breakdown_value
            FROM events FINAL
            WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
              AND event_type IN (
                  {step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}, {exclude:String})
              AND ({unit:String} != 'input_id' OR input_id IS NOT NULL)
        )
        GROUP BY unit
        -- Without an exclusion step the countIf folds away with its if().
        HAVING level > 0 AND if({exclude:String} = '', 1, countIf(event_type = {exclude:String}) = 0)
    )
    GROUP BY breakdown
)
ARRAY JOIN reached AS units, arrayEnumerate(reached) AS step
WHERE step <= step_count
WINDOW w AS (PARTITION BY breakdown ORDER BY step ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY breakdown, step
