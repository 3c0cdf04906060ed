-- The contaminated units of one experiment and why: exactly the units experiment_units flags
-- contaminated = 1 (docs/analytics-definitions.md, "Experiment units"), one row each.
-- reason: 'device' when the device itself was seen in two arms (exposures of two variants, or an
-- event at or after its first exposure whose experiments map names another variant); otherwise
-- 'user' (a user_id on its events is also on a unit of another arm).
-- variants: every arm seen, sorted: the device's own (exposures and experiments maps at or after
-- its first exposure) and the arms of the units that share a user_id with it.
-- user_ids: the user ids on its events in the window, sorted.
-- The flag comes from the view, so the set of units is the view's by construction; the reasons are
-- recomputed from the same rows by the same rules. The view is read once and the window's events
-- once, grouped by device: the arms of a person need every unit, the answer only the dirty ones.
SELECT
    unit_id AS anonymous_id,
    if(length(any(own_arms)) > 1, 'device', 'user') AS reason,
    arraySort(arrayDistinct(arrayConcat(any(own_arms), arrayFlatten(groupArray(person_arms))))) AS variants,
    arraySort(any(user_ids)) AS user_ids
FROM
(
    SELECT
        u.unit_id AS unit_id,
        u.dirty AS dirty,
        arrayDistinct(arrayConcat(
            s.exposure_arms,
            arrayFilter((arm, at) -> arm != '' AND at >= toUnixTimestamp64Milli(u.exposed_at), s.named.1, s.named.2)
        )) AS own_arms,
        s.user_ids AS user_ids,
        person,
        if(person = '', [], groupUniqArray(u.unit_arm) OVER (PARTITION BY person)) AS person_arms
    FROM
    (
        SELECT anonymous_id AS unit_id, toString(variant) AS unit_arm, first_exposure_at AS exposed_at,
               contaminated AS dirty
        FROM experiment_units(
            experiment_key = {experiment_key:String},
            range_start = {from:DateTime64(3, 'UTC')},
            range_end = {to:DateTime64(3, 'UTC')}
        )
    ) AS u
    INNER JOIN
    (
        SELECT
            anonymous_id AS seen_id,
            -- The exposures experiment_units counts (same filter), and no other.
            groupUniqArrayIf(
                toString(variant),
                event_type = 'experiment_exposure' AND experiment_key = {experiment_key:String}
                    AND variant IS NOT NULL AND JSONExtractString(properties, 'assignment_source') != 'forced'
            ) AS exposure_arms,
            -- Per arm named in an experiments map, its latest time: enough for "at or after".
            maxMap([toString(experiments[{experiment_key:String}])], [toUnixTimestamp64Milli(event_ts)]) AS named,
            groupUniqArrayIf(assumeNotNull(user_id), user_id IS NOT NULL) AS user_ids
        FROM events FINAL
        WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
        GROUP BY anonymous_id
    ) AS s ON s.seen_id = u.unit_id
    LEFT ARRAY JOIN s.user_ids AS person
)
WHERE dirty = 1
GROUP BY unit_id
ORDER BY anonymous_id
