-- Strict funnel (docs/analytics-definitions.md, "Funnels", strict mode): as funnel.sql, but after the
-- unit's first entry the chain stops at the first event of a listed type that is neither the next
-- step, nor a repeat of a step already reached, nor a new entry (windowFunnel 'strict_order').
-- Step-1 events that are no entry (outside [from, to), or before a variant unit's first exposure)
-- are not given to windowFunnel, so they break no chain; a unit with an event of the excluded type
-- is left out anyway.
-- unit: 'input_id' (image), 'anonymous_id' (device) or 'session_id'.
-- breakdown: 'none', 'tool', 'inference_type', 'variant' (of experiment {experiment}), 'day', 'source'.
-- Steps are event types; '' ends the funnel early. {exclude}: units with that event in
-- [from, to + window) are left out ('' = none).
-- Entries in [from, to); later steps read up to to + window. The breakdown value comes from the
-- conversion path as in funnel.sql (the earliest entry whose greedy chain reaches the strict level,
-- cut at that level).
-- Reads events FINAL: the first received copy of a resent event counts, before a merge too.
-- This file and funnel.sql differ only in windowFunnel's mode and these comments.
WITH
    [{step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}] AS steps,
    length(arrayFilter(s -> s != '', steps)) AS step_count,
    -- The clean devices of the experiment: ids, arms, first exposures (ms); empty but for a variant
    -- breakdown. A scalar, looked up per row with transform() (a hash table built once): a JOIN
    -- here costs every funnel, even with nothing on its right.
    (
        SELECT
            groupArray(anonymous_id),
            groupArray(variant),
            groupArray(toUInt64(toUnixTimestamp64Milli(first_exposure_at)))
        FROM experiment_units(
            experiment_key = {experiment:String},
            range_start = {from:DateTime64(3, 'UTC')}, range_end = {to:DateTime64(3, 'UTC')})
        WHERE {breakdown:String} = 'variant' AND contaminated = 0
    ) AS exposures
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
            level,
            -- Without a breakdown the value is not needed: the constant if() folds it away.
            if({breakdown:String} NOT IN ('tool', 'inference_type', 'variant', 'day', 'source'), 'all',
               if(empty(path_value), '(none)', path_value)) AS breakdown,
            -- The conversion path: per entry its greedy chain [t1, ..., t5] (each next step at its earliest
            -- event at or after the previous one and within the window of the entry; 0: not reached);
            -- the path is the earliest entry's chain that reaches the level, cut at the level (a strict
            -- chain can stop before the greedy one does). Sorted arrays, so arrayFirst is the earliest.
            -- One fold per entry rather than an alias per step: aliases referring to aliases are
            -- expanded where they are used, which multiplied the work to plan and run the query.
            arrayMap(
                (t, step) -> if(step <= level, t, 0),
                arrayFirst(
                    chain -> arrayCount(t -> t > 0, chain) >= level,
                    arrayMap(e -> arrayFold(
                        (chain, times) -> arrayPushBack(
                            chain, if(chain[-1] = 0, 0, arrayFirst(x -> x >= chain[-1] AND x - e <= window_ms, times))),
                        [s2, s3, s4, s5], [e]), entries)) AS greedy_path,
                arrayEnumerate(greedy_path)) AS path,
            -- The event that gives the value: the entry; for tool and inference_type the path's
            -- event of that step, or, when it is not a step, the first such event in the window.
            indexOf(steps, multiIf({breakdown:String} = 'tool', 'tool_selected',
                                   {breakdown:String} = 'inference_type', 'inference_requested', steps[1]))
                AS defining_step,
            if(defining_step > 0, path[defining_step],
               arrayFirst(x -> x >= path[1] AND x - path[1] <= window_ms, arraySort(candidates.1))) AS value_at,
            -- Several events at that millisecond: the smallest value.
            if({breakdown:String} = 'day',
               if(value_at > 0, toString(toDate(fromUnixTimestamp64Milli(toInt64(value_at), 'UTC'))), ''),
               ifNull(arrayMin(arrayFilter(
                   v -> v != '', arrayMap(c -> if(c.1 = value_at AND value_at > 0, c.2, ''), candidates))), ''))
                AS path_value
        FROM
        (
            SELECT
                unit,
                windowFunnelIf({window_s:UInt64} * 1000, 'strict_order')(
                    ts,
                    is_entry,
                    event_type = {step2:String},
                    event_type = {step3:String},
                    event_type = {step4:String},
                    event_type = {step5:String},
                    is_step
                ) AS level,
                {window_s:UInt64} * 1000 AS window_ms,
                -- One array of numbers per unit, not one per step: time * 32 + a bit per role (entry,
                -- step 2..5), sorted, so by time. Per-unit arrays cost memory per array, and a wide
                -- funnel must fit the analyst sessions' memory limit.
                arraySort(groupArrayIf(
                    ts * 32 + is_entry + 2 * (event_type = {step2:String}) + 4 * (event_type = {step3:String})
                        + 8 * (event_type = {step4:String}) + 16 * (event_type = {step5:String}),
                    is_step)) AS timeline,
                arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 0), timeline)) AS entries,
                arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 1), timeline)) AS s2,
                arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 2), timeline)) AS s3,
                arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 3), timeline)) AS s4,
                arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 4), timeline)) AS s5,
                -- Values only where the breakdown needs an event's: the day is the entry's time's.
                groupArrayIf((ts, value), has_value) AS candidates
            FROM
            (
                SELECT
                    -- One if() per unit, summed: each folds to its branch or 0 at planning, so only
                    -- the chosen column is read and hashed. The key is not Nullable (assumeNotNull:
                    -- rows without an input_id are filtered below), which halves the cost of the GROUP BY.
                    if({unit:String} = 'input_id', cityHash64(assumeNotNull(input_id)), 0)
                        + if({unit:String} = 'session_id', cityHash64(session_id), 0)
                        + if({unit:String} NOT IN ('input_id', 'session_id'), cityHash64(anonymous_id), 0) AS unit,
                    toUInt64(toUnixTimestamp64Milli(event_ts)) AS ts,
                    event_type,
                    transform(anonymous_id, exposures.1, exposures.2, '') AS arm,
                    transform(anonymous_id, exposures.1, exposures.3, toUInt64(0)) AS exposed_ms,
                    event_type = {step1:String}
                        AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
                        AND ({breakdown:String} != 'variant' OR (arm != '' AND ts >= exposed_ms)) AS is_entry,
                    -- What windowFunnel sees: entries and the other steps' events. A step-1 event that
                    -- is no entry is not there, so it cannot break a strict chain; the excluded type
                    -- need not be (a unit with one is left out).
                    is_entry OR event_type IN ({step2:String}, {step3:String}, {step4:String}, {step5:String})
                        AS is_step,
                    multiIf({breakdown:String} = 'tool', event_type = 'tool_selected',
                            {breakdown:String} = 'inference_type', event_type = 'inference_requested',
                            {breakdown:String} IN ('variant', 'source'), is_entry,
                            0) AS has_value,
                    -- As for the unit: only the chosen breakdown survives planning (concat of '' and it).
                    concat(
                        if({breakdown:String} = 'tool', ifNull(toString(tool_name), ''), ''),
                        if({breakdown:String} = 'inference_type', ifNull(toString(inference_type), ''), ''),
                        if({breakdown:String} = 'variant', arm, ''),
                        if({breakdown:String} = 'day', toString(toDate(event_ts)), ''),
                        if({breakdown:String} = 'source', toString(source), '')
                    ) AS value
                FROM events FINAL
                WHERE event_ts >= {from:DateTime64(3, 'UTC')}
                  AND event_ts < {to:DateTime64(3, 'UTC')} + toIntervalSecond({window_s:UInt64})
                  AND event_type IN (
                      {step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}, {exclude:String},
                      if({breakdown:String} = 'tool', 'tool_selected', ''),
                      if({breakdown:String} = 'inference_type', 'inference_requested', ''))
                  AND ({unit:String} != 'input_id' OR input_id IS NOT NULL)
            )
            GROUP BY unit
            -- Without an exclusion step the countIf folds away with its if().
            HAVING level > 0 AND if({exclude:String} = '', 1, countIf(event_type = {exclude:String}) = 0)
        )
    )
    GROUP BY breakdown
)
ARRAY JOIN reached AS units, arrayEnumerate(reached) AS step
WHERE step <= step_count
WINDOW w AS (PARTITION BY breakdown ORDER BY step ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY breakdown, step
