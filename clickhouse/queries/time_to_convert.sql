-- Time to convert per funnel step: for each unit, the first {step1} in the range, then the first
-- of each next step at or after the previous one, within {window_s} seconds of the first.
-- Seconds from the previous step and from the first, with P50/P90/P99, by {breakdown}
-- (same units, steps and breakdowns as funnel.sql). Built from minimums: duplicates cannot
-- change it.
WITH [{step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}] AS steps
SELECT
    breakdown,
    step,
    steps[step] AS step_name,
    count() AS units,
    round(avg(from_previous_s), 3) AS mean_s,
    round(quantileExact(0.5)(from_previous_s), 3) AS p50_s,
    round(quantileExact(0.9)(from_previous_s), 3) AS p90_s,
    round(quantileExact(0.99)(from_previous_s), 3) AS p99_s,
    round(quantileExact(0.5)(from_first_s), 3) AS p50_from_first_s
FROM
(
    SELECT
        breakdown,
        step,
        (times[step] - times[step - 1]) / 1000 AS from_previous_s,
        (times[step] - times[1]) / 1000 AS from_first_s
    FROM
    (
        SELECT
            unit,
            argMinIf(breakdown_value, ts, breakdown_value != '') AS first_breakdown,
            if(empty(first_breakdown), '(none)', first_breakdown) AS breakdown,
            minIf(ts, event_type = {step1:String}) AS t1,
            arrayFilter(x -> x >= t1 AND x - t1 <= {window_s:UInt64} * 1000,
                        groupArrayIf(ts, event_type = {step2:String})) AS c2,
            if(empty(c2), 0, arrayMin(c2)) AS t2,
            arrayFilter(x -> t2 > 0 AND x >= t2 AND x - t1 <= {window_s:UInt64} * 1000,
                        groupArrayIf(ts, event_type = {step3:String})) AS c3,
            if(empty(c3), 0, arrayMin(c3)) AS t3,
            arrayFilter(x -> t3 > 0 AND x >= t3 AND x - t1 <= {window_s:UInt64} * 1000,
                        groupArrayIf(ts, event_type = {step4:String})) AS c4,
            if(empty(c4), 0, arrayMin(c4)) AS t4,
            arrayFilter(x -> t4 > 0 AND x >= t4 AND x - t1 <= {window_s:UInt64} * 1000,
                        groupArrayIf(ts, event_type = {step5:String})) AS c5,
            if(empty(c5), 0, arrayMin(c5)) AS t5,
            [t1, t2, t3, t4, t5] AS times
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
            FROM events
            WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
              AND event_type IN (
                  {step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}, {exclude:String})
              AND ({unit:String} != 'input_id' OR input_id IS NOT NULL)
        )
        GROUP BY unit
        HAVING countIf(event_type = {exclude:String}) = 0 AND countIf(event_type = {step1:String}) > 0
    )
    ARRAY JOIN arrayEnumerate(times) AS step
    WHERE step >= 2 AND steps[step] != '' AND times[step] > 0
)
GROUP BY breakdown, step
ORDER BY breakdown, step
