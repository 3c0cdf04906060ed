-- experiment_units in one pass over the window's events. 0008's body evaluated its CTEs once per
-- reference (exposures three times, seen three times), each an `events FINAL` scan, and every
-- experiment query evaluates the view again; this body reads `events FINAL` once, grouped by device.
-- The definition (docs/analytics-definitions.md, "Experiment units") is unchanged: same parameters,
-- same columns, same rows. A unit is a device with a non-forced exposure of the experiment in
-- [range_start, range_end); its variant is its earliest exposure's (smallest variant on a tie);
-- contaminated = 1 when it has exposures of two variants, or an event at or after its first
-- exposure whose experiments map names another variant, or a user_id (on any of its events in the
-- range) that is also on a unit of another arm.
-- named: per arm named in an experiments map, its latest time (ms), enough to tell whether any
-- event at or after the first exposure named it. split: a person whose units span two arms.
CREATE OR REPLACE VIEW experiment_units${on_cluster} AS
WITH
    per_unit AS (
        SELECT
            row_unit AS unit_id,
            argMinIf(row_arm, (row_at, row_arm), is_exposure) AS unit_variant,
            minIf(row_at, is_exposure) AS unit_first_exposure_at,
            uniqExactIf(row_arm, is_exposure) > 1 AS exposed_to_two,
            maxMap([row_named], [toUnixTimestamp64Milli(row_at)]) AS named,
            groupUniqArrayIf(assumeNotNull(row_user), row_user IS NOT NULL) AS user_ids
        FROM
        (
            SELECT
                anonymous_id AS row_unit,
                user_id AS row_user,
                event_ts AS row_at,
                toString(variant) AS row_arm,
                toString(experiments[{experiment_key:String}]) AS row_named,
                event_type = 'experiment_exposure'
                    AND experiment_key = {experiment_key:String}
                    AND variant IS NOT NULL
                    AND JSONExtractString(properties, 'assignment_source') != 'forced' AS is_exposure
            FROM events FINAL
            WHERE event_ts >= {range_start:DateTime64(3, 'UTC')} AND event_ts < {range_end:DateTime64(3, 'UTC')}
        )
        GROUP BY row_unit
        HAVING countIf(is_exposure) > 0
    ),
    flagged AS (
        SELECT
            unit_id,
            unit_variant,
            unit_first_exposure_at,
            exposed_to_two
                OR arrayExists(
                    (arm, at) -> arm NOT IN ('', unit_variant) AND at >= toUnixTimestamp64Milli(unit_first_exposure_at),
                    named.1, named.2
                ) AS own,
            person != '' AND uniqExact(unit_variant) OVER (PARTITION BY person) > 1 AS split
        FROM per_unit
        LEFT ARRAY JOIN user_ids AS person
    )
SELECT
    unit_id AS anonymous_id,
    any(unit_variant) AS variant,
    any(unit_first_exposure_at) AS first_exposure_at,
    toUInt8(max(own OR split)) AS contaminated
FROM flagged
GROUP BY unit_id;
