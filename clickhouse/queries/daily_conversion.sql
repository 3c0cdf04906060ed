-- Daily conversion trend (docs/analytics-definitions.md, "Daily conversion"): the funnel upload →
-- tool → inference → save → score on images within {window_s} seconds, by the UTC day of each
-- image's conversion path entry, and upload-to-save conversion.
-- Entries are uploads in [from, to); later steps are read up to to + window. Level and path as in
-- funnel.sql (windowFunnel; the earliest entry whose greedy chain reaches the level).
-- complete: the day's end (or `to`, if earlier) + window is past now: no late step can still come.
-- Reads events FINAL: the first received copy of a resent event counts, before a merge too.
SELECT
    day,
    count() AS uploaded,
    countIf(level >= 2) AS tool,
    countIf(level >= 3) AS inference,
    countIf(level >= 4) AS saved,
    countIf(level >= 5) AS scored,
    round(if(uploaded = 0, 0, saved / uploaded), 6) AS upload_to_save,
    toBool(least(toDateTime64(day + 1, 3, 'UTC'), {to:DateTime64(3, 'UTC')}) + toIntervalSecond({window_s:UInt64})
        <= now64(3, 'UTC')) AS complete
FROM
(
    SELECT
        level,
        -- The conversion path's entry: the only entry, or else the earliest whose greedy chain (each
        -- next step at its earliest event at or after the previous one, within the window of the
        -- entry; 0: not reached) reaches the level; the chains run only for several entries.
        if(length(entries) = 1, 1, arrayFirstIndex(
            (a, b, c, d) -> 1 + (a > 0) + (b > 0) + (c > 0) + (d > 0) >= level,
            arrayMap(e -> arrayFirst(x -> x >= e AND x - e <= window_ms, s2), entries) AS c2,
            arrayMap((e, p) -> if(p = 0, 0, arrayFirst(x -> x >= p AND x - e <= window_ms, s3)), entries, c2) AS c3,
            arrayMap((e, p) -> if(p = 0, 0, arrayFirst(x -> x >= p AND x - e <= window_ms, s4)), entries, c3) AS c4,
            arrayMap((e, p) -> if(p = 0, 0, arrayFirst(x -> x >= p AND x - e <= window_ms, s5)), entries, c4)))
            AS path_index,
        toDate(fromUnixTimestamp64Milli(toInt64(entries[path_index]), 'UTC')) AS day
    FROM
    (
        SELECT
            image,
            windowFunnelIf({window_s:UInt64} * 1000)(
                ts,
                is_entry,
                event_type = 'tool_selected',
                event_type = 'inference_requested',
                event_type = 'image_saved',
                event_type = 'score_submitted',
                -- An upload that is no entry is not a step at all.
                is_entry OR event_type != 'image_uploaded'
            ) AS level,
            {window_s:UInt64} * 1000 AS window_ms,
            arraySort(groupArrayIf(ts, is_entry)) AS entries,
            arraySort(groupArrayIf(ts, event_type = 'tool_selected')) AS s2,
            arraySort(groupArrayIf(ts, event_type = 'inference_requested')) AS s3,
            arraySort(groupArrayIf(ts, event_type = 'image_saved')) AS s4,
            arraySort(groupArrayIf(ts, event_type = 'score_submitted')) AS s5
        FROM
        (
            -- A key that is not Nullable (the rows without an input_id are filtered out) groups at
            -- about half the cost.
            SELECT
                assumeNotNull(input_id) AS image,
                event_type,
                toUInt64(toUnixTimestamp64Milli(event_ts)) AS ts,
                event_type = 'image_uploaded'
                    AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')} AS is_entry
            FROM events FINAL
            WHERE event_ts >= {from:DateTime64(3, 'UTC')}
              AND event_ts < {to:DateTime64(3, 'UTC')} + toIntervalSecond({window_s:UInt64})
              AND input_id IS NOT NULL
              AND event_type IN ('image_uploaded', 'tool_selected', 'inference_requested', 'image_saved', 'score_submitted')
        )
        GROUP BY image
        HAVING level >= 1
    )
)
GROUP BY day
ORDER BY day
