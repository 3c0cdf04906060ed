-- Paths after drop-off (docs/analytics-definitions.md, "Drop-off"): for the units that dropped at
-- step {step} (level = {step} - 1 in the view funnel_units, migration 0011), the types of their
-- next {depth} events after their last reached step: events of the unit (any type but
-- pipeline_heartbeat, no funnel filter) later than the path's step-({step} - 1) time and at most
-- the window after its entry, in time order (ties at one millisecond by type name), joined by
-- ' → ', '(end)' when there is none. share: units / all dropped units. Most common first.
-- Events are read once (FINAL: the first received copy counts) and probed against the dropped
-- units; the unit key is the view's (the same hash of the same column).
SELECT path, units, units / sum(units) OVER () AS share
FROM
(
    SELECT if(empty(next), '(end)', arrayStringConcat(next, ' → ')) AS path, count() AS units
    FROM
    (
        SELECT
            dropped.unit AS unit,
            arraySlice(arrayMap(e -> toString(e.2), arraySort(groupArrayIf(
                (later.ts, later.event_type), later.ts > dropped.last_at AND later.ts <= dropped.until))),
                1, {depth:UInt8}) AS next
        FROM
        (
            SELECT
                if({unit:String} = 'input_id', cityHash64(assumeNotNull(input_id)), 0)
                    + if({unit:String} = 'session_id', cityHash64(session_id), 0)
                    + if({unit:String} NOT IN ('input_id', 'session_id'), cityHash64(anonymous_id), 0) AS unit,
                toUInt64(toUnixTimestamp64Milli(event_ts)) AS ts,
                event_type
            FROM events FINAL
            WHERE event_ts >= {from:DateTime64(3, 'UTC')}
              AND event_ts < {to:DateTime64(3, 'UTC')} + toIntervalSecond({window_s:UInt64})
              AND event_type != 'pipeline_heartbeat'
              AND ({unit:String} != 'input_id' OR input_id IS NOT NULL)
        ) AS later
        -- Every dropped unit stays, with or without a later event (its path is then '(end)').
        RIGHT JOIN
        (
            SELECT unit, path[{step:UInt8} - 1] AS last_at, path[1] + {window_s:UInt64} * 1000 AS until
            FROM funnel_units(
                step1 = {step1:String}, step2 = {step2:String}, step3 = {step3:String}, step4 = {step4:String},
                step5 = {step5:String}, from = {from:DateTime64(3, 'UTC')}, to = {to:DateTime64(3, 'UTC')},
                window_s = {window_s:UInt64}, unit = {unit:String}, breakdown = {breakdown:String},
                experiment = {experiment:String}, exclude = {exclude:String}, mode = {mode:String},
                filter_tool = {filter_tool:String}, filter_inference_type = {filter_inference_type:String},
                filter_variant = {filter_variant:String}, filter_source = {filter_source:String},
                filter_browser = {filter_browser:String}, filter_os = {filter_os:String},
                filter_device = {filter_device:String}, filter_size = {filter_size:String})
            WHERE level = {step:UInt8} - 1
        ) AS dropped ON later.unit = dropped.unit
        GROUP BY dropped.unit
    )
    GROUP BY path
)
ORDER BY units DESC, path
LIMIT {limit:UInt32}
