-- funnel_units again, same parameters, columns, rows and definition as 0011 and 0013 (read their
-- comments there), cheaper per unit: the unit's id is made text once per unit rather than once per
-- event, and a unit that only entered (level 1) takes its first entry as its path without the
-- chain from every entry (the earliest entry reaching level 1 is the first one).
CREATE OR REPLACE VIEW funnel_units${on_cluster} AS
WITH
    [{step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}] AS steps,
    (
        SELECT
            groupArray(anonymous_id),
            groupArray(variant),
            groupArray(toUInt64(toUnixTimestamp64Milli(first_exposure_at)))
        FROM experiment_units(
            experiment_key = {experiment:String},
            range_start = {from:DateTime64(3, 'UTC')}, range_end = {to:DateTime64(3, 'UTC')})
        WHERE ({breakdown:String} = 'variant' OR {filter_variant:String} != '') AND contaminated = 0
    ) AS exposures
SELECT unit, unit_id, anonymous_id, level, path, breakdown
FROM
(
    SELECT
        unit, unit_id, anonymous_id, level, path,
        if({breakdown:String} = 'day',
           if(value_at > 0, toString(toDate(fromUnixTimestamp64Milli(toInt64(value_at), 'UTC'))), ''),
           ifNull(arrayMin(arrayFilter(
               v -> v != '', arrayMap(c -> if(c.1 = value_at AND value_at > 0, c.2, ''), candidates))), ''))
            AS path_value,
        if({breakdown:String} NOT IN ('tool', 'inference_type', 'variant', 'day', 'source', 'browser', 'os', 'device', 'size'),
           'all', if(empty(path_value), '(none)', path_value)) AS breakdown
    FROM
    (
    SELECT
    unit,
    unit_id,
    anonymous_id,
    level,
    if(level = 1, arrayResize([entries[1]], 5), arrayMap(
        (t, step) -> if(step <= level, t, 0),
        arrayFirst(
            chain -> arrayCount(t -> t > 0, chain) >= level,
            arrayMap(e -> arrayFold(
                (chain, times) -> arrayPushBack(
                    chain, if(chain[-1] = 0, 0, arrayFirst(x -> x >= chain[-1] AND x - e <= window_ms, times))),
                [s2, s3, s4, s5], [e]), entries)) AS greedy_path,
        arrayEnumerate(greedy_path))) AS path,
    indexOf(steps, multiIf({breakdown:String} = 'tool', 'tool_selected',
                           {breakdown:String} = 'inference_type', 'inference_requested',
                           {breakdown:String} = 'size', 'image_uploaded', steps[1]))
        AS defining_step,
    if(defining_step > 0, path[defining_step],
       arrayFirst(x -> x >= path[1] AND x - path[1] <= window_ms, arraySort(candidates.1))) AS value_at,
    candidates
FROM
(
    SELECT
        unit,
        multiIf({unit:String} = 'input_id', toString(any(image_id)),
                {unit:String} = 'session_id', any(session_id), any(device_id)) AS unit_id,
        argMinIf(device_id, ts, is_entry) AS anonymous_id,
        toUInt8(windowFunnelIf({window_s:UInt64} * 1000)(
            ts, is_entry, event_type = {step2:String}, event_type = {step3:String},
            event_type = {step4:String}, event_type = {step5:String},
            is_step AND {mode:String} != 'strict')
        + windowFunnelIf({window_s:UInt64} * 1000, 'strict_order')(
            ts, is_entry, event_type = {step2:String}, event_type = {step3:String},
            event_type = {step4:String}, event_type = {step5:String},
            is_step AND {mode:String} = 'strict')) AS level,
        {window_s:UInt64} * 1000 AS window_ms,
        arraySort(groupArrayIf(
            ts * 32 + is_entry + 2 * (event_type = {step2:String}) + 4 * (event_type = {step3:String})
                + 8 * (event_type = {step4:String}) + 16 * (event_type = {step5:String}),
            is_step)) AS timeline,
        arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 0), timeline)) AS entries,
        arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 1), timeline)) AS s2,
        arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 2), timeline)) AS s3,
        arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 3), timeline)) AS s4,
        arrayMap(x -> intDiv(x, 32), arrayFilter(x -> bitTest(x, 4), timeline)) AS s5,
        groupArrayIf((ts, value), has_value) AS candidates
    FROM
    (
        SELECT
            if({unit:String} = 'input_id', cityHash64(assumeNotNull(input_id)), 0)
                + if({unit:String} = 'session_id', cityHash64(session_id), 0)
                + if({unit:String} NOT IN ('input_id', 'session_id'), cityHash64(anonymous_id), 0) AS unit,
            assumeNotNull(input_id) AS image_id,
            session_id,
            anonymous_id AS device_id,
            toUInt64(toUnixTimestamp64Milli(event_ts)) AS ts,
            event_type,
            transform(anonymous_id, exposures.1, exposures.2, '') AS arm,
            transform(anonymous_id, exposures.1, exposures.3, toUInt64(0)) AS exposed_ms,
            multiIf(width IS NULL OR height IS NULL, '',
                    toUInt64(width) * height < 1000000, 'small',
                    toUInt64(width) * height < 4000000, 'medium', 'large') AS size_bucket,
            event_type = {step1:String}
                AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
                AND ({breakdown:String} != 'variant' OR (arm != '' AND ts >= exposed_ms)) AS is_entry,
            is_entry OR event_type IN ({step2:String}, {step3:String}, {step4:String}, {step5:String}) AS is_step,
            multiIf({breakdown:String} = 'tool', event_type = 'tool_selected',
                    {breakdown:String} = 'inference_type', event_type = 'inference_requested',
                    {breakdown:String} = 'size', event_type = 'image_uploaded',
                    {breakdown:String} IN ('variant', 'source', 'browser', 'os', 'device'), is_entry,
                    0) AS has_value,
            concat(
                if({breakdown:String} = 'tool', ifNull(toString(tool_name), ''), ''),
                if({breakdown:String} = 'inference_type', ifNull(toString(inference_type), ''), ''),
                if({breakdown:String} = 'variant', arm, ''),
                if({breakdown:String} = 'day', toString(toDate(event_ts)), ''),
                if({breakdown:String} = 'source', toString(source), ''),
                if({breakdown:String} = 'browser', ifNull(toString(browser), ''), ''),
                if({breakdown:String} = 'os', ifNull(toString(os), ''), ''),
                if({breakdown:String} = 'device', ifNull(toString(device), ''), ''),
                if({breakdown:String} = 'size', size_bucket, '')
            ) AS value
        FROM events FINAL
        WHERE event_ts >= {from:DateTime64(3, 'UTC')}
          AND event_ts < {to:DateTime64(3, 'UTC')} + toIntervalSecond({window_s:UInt64})
          AND event_type IN (
              {step1:String}, {step2:String}, {step3:String}, {step4:String}, {step5:String}, {exclude:String},
              if({breakdown:String} = 'tool', 'tool_selected', ''),
              if({breakdown:String} = 'inference_type', 'inference_requested', ''),
              if({breakdown:String} = 'size', 'image_uploaded', ''))
          AND ({unit:String} != 'input_id' OR input_id IS NOT NULL)
          AND ({filter_tool:String} = '' OR tool_name IS NULL OR tool_name = {filter_tool:String})
          AND ({filter_inference_type:String} = '' OR inference_type IS NULL
               OR inference_type = {filter_inference_type:String})
          AND ({filter_source:String} = '' OR source = {filter_source:String})
          AND ({filter_browser:String} = '' OR browser IS NULL OR browser = {filter_browser:String})
          AND ({filter_os:String} = '' OR os IS NULL OR os = {filter_os:String})
          AND ({filter_device:String} = '' OR device IS NULL OR device = {filter_device:String})
          AND ({filter_size:String} = '' OR size_bucket = '' OR size_bucket = {filter_size:String})
          AND ({filter_variant:String} = '' OR (arm = {filter_variant:String} AND ts >= exposed_ms))
    )
    GROUP BY unit
    HAVING level > 0 AND if({exclude:String} = '', 1, countIf(event_type = {exclude:String}) = 0)
)
)
);
