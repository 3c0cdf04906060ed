-- QA: events that arrived after their session's allowed lateness or older than the late limit,
-- per source, among everything received in the window.
SELECT
    if(toString(source) = '', '(no source)', toString(source)) AS subject,
    toFloat64(countIf(is_late OR timestamp_flag = 'too_old') / count()) AS value,
    toUInt64(countIf(is_late OR timestamp_flag = 'too_old')) AS affected,
    toUInt64(count()) AS total,
    if(
        affected > 0,
        concat(
            toString(countIf(is_late)), ' late for their session, ',
            toString(countIf(timestamp_flag = 'too_old')), ' older than the late limit; worst ',
            toString(round(maxIf(dateDiff('millisecond', event_ts, received_at), is_late OR timestamp_flag = 'too_old')
                / 1000)), ' s behind'
        ),
        ''
    ) AS detail
FROM events FINAL
WHERE received_at >= {from:DateTime64(3, 'UTC')} AND received_at < {to:DateTime64(3, 'UTC')}
GROUP BY source
ORDER BY value DESC, subject
