-- The contaminated units of one experiment and why: exactly the units experiment_units flags
-- contaminated = 1 (docs/analytics-definitions.md, "Experiment units"), one row each.
-- reason: 'device' when the device itself was seen in two arms (exposures of two variants, or an
-- event at or after its first exposure whose experiments map names another variant); otherwise
-- 'user' (a user_id on its events is also on a unit of another arm).
-- variants: every arm seen, sorted: the device's own (exposures and experiments maps at or after
-- its first exposure) and the arms of the units that share a user_id with it.
-- user_ids: the user ids on its events in the window, sorted.
-- The flag comes from the view, so the set of units is the view's by construction; the reasons are
-- recomputed here from the same rows and the same rules.
WITH
    units AS (
        SELECT anonymous_id AS unit_id, toString(variant) AS unit_arm, first_exposure_at AS exposed_at,
               contaminated AS dirty
        FROM experiment_units(
            experiment_key = {experiment_key:String},
            range_start = {from:DateTime64(3, 'UTC')},
            range_end = {to:DateTime64(3, 'UTC')}
        )
    ),
    seen AS (
        SELECT
            u.unit_id AS seen_id,
            any(u.unit_arm) AS seen_arm,
            any(u.dirty) AS seen_dirty,
            arrayDistinct(arrayConcat(
                groupUniqArrayIf(e.exposure_arm, e.exposure_arm != ''),
                groupUniqArrayIf(e.named_arm, e.named_arm != '' AND e.event_at >= u.exposed_at)
            )) AS device_arms,
            groupUniqArrayIf(assumeNotNull(e.event_user_id), e.event_user_id IS NOT NULL) AS user_ids
        FROM
        (
            SELECT
                anonymous_id AS event_unit_id,
                user_id AS event_user_id,
                event_ts AS event_at,
                toString(experiments[{experiment_key:String}]) AS named_arm,
                -- The exposures experiment_units counts (same filter), and no other.
                if(event_type = 'experiment_exposure'
                       AND experiment_key = {experiment_key:String}
                       AND variant IS NOT NULL
                       AND JSONExtractString(properties, 'assignment_source') != 'forced',
                   toString(variant), '') AS exposure_arm
            FROM events FINAL
            WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
                AND anonymous_id IN (SELECT unit_id FROM units)
        ) AS e
        INNER JOIN units AS u ON u.unit_id = e.event_unit_id
        GROUP BY u.unit_id
    ),
    people AS (
        SELECT person_id, groupUniqArray(seen_arm) AS person_arms
        FROM seen
        ARRAY JOIN user_ids AS person_id
        GROUP BY person_id
    )
SELECT
    s.seen_id AS anonymous_id,
    if(length(s.device_arms) > 1, 'device', 'user') AS reason,
    arraySort(arrayDistinct(arrayConcat(s.device_arms, arrayFlatten(groupArray(p.person_arms))))) AS variants,
    arraySort(s.user_ids) AS user_ids
FROM seen AS s
LEFT ARRAY JOIN s.user_ids AS unit_person
LEFT JOIN people AS p ON p.person_id = unit_person
WHERE s.seen_dirty = 1
GROUP BY s.seen_id, s.device_arms, s.user_ids
ORDER BY anonymous_id
