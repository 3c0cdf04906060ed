-- One image's events in order: every event with input_id = {input_id}, by event time (event type,
-- then event id on a tie), at most {limit}, with the seconds since the image's first event.
-- Reads events FINAL: the first received copy of a resent event counts, before a merge too.
SELECT
    event_ts,
    event_type,
    round(dateDiff('millisecond', min(event_ts) OVER (), event_ts) / 1000, 3) AS since_first_s,
    anonymous_id,
    session_id,
    source,
    tool_name,
    inference_type,
    status,
    score,
    event_id
FROM events FINAL
WHERE input_id = {input_id:UUID}
ORDER BY event_ts, event_type, event_id
LIMIT {limit:UInt64}
