-- Pipeline freshness from the heartbeats visible in the warehouse: the age of the newest one
-- (now − received_at) and how long that one took from emission to insertion.
SELECT
    count() AS heartbeats,
    toFloat64(dateDiff('millisecond', max(received_at), {now:DateTime64(3, 'UTC')}) / 1000) AS age_s,
    toFloat64(dateDiff('millisecond', argMax(received_at, received_at), argMax(inserted_at, received_at)) / 1000)
        AS last_latency_s,
    toString(max(received_at)) AS last_received_at
FROM events FINAL
WHERE anonymous_id = 'funnelstream-heartbeat'
    AND event_type = 'pipeline_heartbeat'
    AND client_ts >= {now:DateTime64(3, 'UTC')} - INTERVAL 1 DAY
