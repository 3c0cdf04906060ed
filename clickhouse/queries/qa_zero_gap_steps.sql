-- QA: consecutive funnel steps of one image with zero milliseconds between them, per source of the
-- later event. A tracker batch sent without sent_at gets one event_ts for all its events (the
-- server's receipt time: its offline age is unknown), so the steps of a journey collapse onto one
-- instant and "equal timestamps advance the funnel" makes time to convert 0 s. A pair is two
-- events of an image next to each other in (event_ts, funnel_step, event_id) order whose funnel
-- steps differ (tool_selected then segments_proposed, both the tool step, is no pair); the images'
-- funnel events in the window are judged. The detail says how many of those were sent without
-- sent_at. Reads events FINAL: the first received copy of a resent event counts.
SELECT
    if(src = '', '(no source)', src) AS subject,
    toFloat64(countIf(zero_gap) / count()) AS value,
    toUInt64(countIf(zero_gap)) AS affected,
    toUInt64(count()) AS total,
    if(
        affected > 0,
        concat(
            toString(countIf(zero_gap AND unsent)), ' of them sent without sent_at; e.g. input_id ',
            toString(minIf(image, zero_gap))
        ),
        ''
    ) AS detail
FROM (
    SELECT
        image,
        src,
        unsent,
        position > 1 AND step != previous_step AS is_pair,
        step_at = previous_at AS zero_gap
    FROM (
        SELECT
            assumeNotNull(input_id) AS image,
            toString(source) AS src,
            sent_at IS NULL AS unsent,
            funnel_step AS step,
            event_ts AS step_at,
            row_number() OVER w AS position,
            lagInFrame(funnel_step) OVER w AS previous_step,
            lagInFrame(event_ts) OVER w AS previous_at
        FROM events FINAL
        WHERE input_id IS NOT NULL AND funnel_step > 0
            AND event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
        WINDOW w AS (PARTITION BY input_id ORDER BY event_ts, funnel_step, event_id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    WHERE is_pair
)
GROUP BY src
HAVING count() > 0
ORDER BY value DESC, subject
