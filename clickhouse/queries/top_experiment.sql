-- The experiment most events in the range carry: the default for a variant breakdown.
SELECT key AS experiment_key, count() AS events
FROM events FINAL
ARRAY JOIN mapKeys(experiments) AS key
WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
GROUP BY key
ORDER BY events DESC, key
LIMIT 1
