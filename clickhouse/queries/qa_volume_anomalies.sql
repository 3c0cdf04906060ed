-- QA: hourly volume per event type against the same hour of the trailing 7 days.
-- value is a z-score: |count − baseline mean| / sqrt(max(baseline variance, baseline mean, 1)),
-- the mean acting as a Poisson floor so a quiet baseline does not make every wobble an anomaly.
-- Only whole hours inside the window are judged; baseline days on which the pipeline delivered
-- nothing at all (an outage, or before the first event) are left out of the baseline, and an hour
-- with fewer than min_baseline_days usable days is not judged. Hours where neither the count nor
-- the baseline reaches min_volume are not judged either: at a handful of events per hour every
-- deviation is noise.
WITH
    toStartOfHour(toDateTime({from:DateTime64(3, 'UTC')}, 'UTC') + 3599) AS first_hour,
    toStartOfHour(toDateTime({to:DateTime64(3, 'UTC')}, 'UTC')) AS end_hour,
    hourly AS (
        SELECT toString(event_type) AS event_type, toStartOfHour(toDateTime(event_ts, 'UTC')) AS hour, count() AS n
        FROM events FINAL
        WHERE event_ts >= first_hour - INTERVAL 7 DAY AND event_ts < end_hour
            AND event_type != 'pipeline_heartbeat'
        GROUP BY event_type, hour
    ),
    live_hours AS (
        SELECT hour, 1 AS live FROM hourly GROUP BY hour
    ),
    grid AS (
        SELECT types.event_type AS event_type, hours.hour AS hour
        FROM (SELECT DISTINCT event_type FROM hourly) AS types
        CROSS JOIN (
            SELECT arrayJoin(
                arrayMap(
                    i -> first_hour + toIntervalHour(i),
                    range(toUInt32(greatest(dateDiff('hour', first_hour, end_hour), 0)))
                )
            ) AS hour
        ) AS hours
    ),
    baseline_days AS (
        SELECT grid.event_type AS event_type, grid.hour AS hour, grid.hour - toIntervalDay(day) AS past_hour
        FROM grid
        ARRAY JOIN range(1, 8) AS day
    ),
    baseline AS (
        SELECT
            b.event_type AS event_type,
            b.hour AS hour,
            countIf(l.live = 1) AS days,
            sumIf(h.n, l.live = 1) / greatest(days, 1) AS mean,
            greatest(sumIf(h.n * h.n, l.live = 1) / greatest(days, 1) - mean * mean, 0) AS variance
        FROM baseline_days AS b
        LEFT JOIN hourly AS h ON h.event_type = b.event_type AND h.hour = b.past_hour
        LEFT JOIN live_hours AS l ON l.hour = b.past_hour
        GROUP BY b.event_type, b.hour
    )
SELECT
    concat(g.event_type, ' at ', formatDateTime(g.hour, '%Y-%m-%d %H:00', 'UTC'), ' UTC') AS subject,
    toFloat64(abs(toFloat64(c.n) - b.mean) / sqrt(greatest(b.variance, b.mean, 1))) AS value,
    toUInt64(c.n) AS affected,
    toUInt64(round(b.mean)) AS total,
    concat(
        toString(c.n), ' events vs a baseline of ', toString(round(b.mean, 1)),
        ' (sd ', toString(round(sqrt(b.variance), 1)), ') over ', toString(b.days), ' days'
    ) AS detail
FROM grid AS g
LEFT JOIN hourly AS c ON c.event_type = g.event_type AND c.hour = g.hour
INNER JOIN baseline AS b ON b.event_type = g.event_type AND b.hour = g.hour
WHERE b.days >= {min_baseline_days:UInt8} AND greatest(toFloat64(c.n), b.mean) >= {min_volume:UInt32}
ORDER BY value DESC, subject
