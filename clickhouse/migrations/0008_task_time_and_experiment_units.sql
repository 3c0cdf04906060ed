-- Task time per image, defined once (docs/analytics-definitions.md, "Task time"): from the image's
-- first tool click (any time) to the first image_saved at or after the first inference_requested
-- at or after that click. A save before any inference does not end the task.
-- TASK_TIME_CAP_S = 3600 (the default funnel window): a longer task is not counted. Its row stays,
-- with over_cap = 1 and saved_at, inference_to_save_s and diff_second NULL, as an image without a
-- saved result; every reader (task_times, task_time_summary, the experiment analysis) gets the cap
-- from here and applies nothing of its own.
-- anonymous_id is the device of the first tool click (the smallest one on a tie), not any().
-- Reads events FINAL, so the copy of a resent event that counts is the table's, before a merge too.
-- Aliases inside never reuse a column name of events: ClickHouse would substitute them in WHERE.
CREATE OR REPLACE VIEW task_durations${on_cluster} AS
WITH 3600 AS task_time_cap_s
SELECT
    image_id AS input_id,
    clicked_by AS anonymous_id,
    first_tool_click_at,
    first_inference_at,
    if(over_cap = 1, NULL, save_candidate) AS saved_at,
    dateDiff('millisecond', first_tool_click_at, first_inference_at) / 1000 AS tool_to_inference_s,
    dateDiff('millisecond', first_inference_at, saved_at) / 1000 AS inference_to_save_s,
    dateDiff('millisecond', first_tool_click_at, saved_at) / 1000 AS diff_second,
    toUInt8(save_candidate IS NOT NULL
            AND dateDiff('millisecond', first_tool_click_at, save_candidate) > task_time_cap_s * 1000) AS over_cap
FROM
(
    SELECT
        assumeNotNull(input_id) AS image_id,
        argMinIf(anonymous_id, (event_ts, anonymous_id), event_type = 'tool_selected') AS clicked_by,
        minIf(event_ts, event_type = 'tool_selected') AS first_tool_click_at,
        arrayFilter(t -> t >= first_tool_click_at, groupArrayIf(event_ts, event_type = 'inference_requested'))
            AS inferences_after_click,
        if(empty(inferences_after_click), NULL, arrayMin(inferences_after_click)) AS first_inference_at,
        arrayFilter(t -> first_inference_at IS NOT NULL AND t >= first_inference_at,
                    groupArrayIf(event_ts, event_type = 'image_saved')) AS saves_after_inference,
        if(empty(saves_after_inference), NULL, arrayMin(saves_after_inference)) AS save_candidate
    FROM events FINAL
    WHERE input_id IS NOT NULL AND event_type IN ('tool_selected', 'inference_requested', 'image_saved')
    GROUP BY image_id
    HAVING countIf(event_type = 'tool_selected') > 0
);

-- The units of one experiment (docs/analytics-definitions.md, "Experiment units"), called as
--   experiment_units(experiment_key = {experiment:String},
--                    range_start = {from:DateTime64(3, 'UTC')}, range_end = {to:DateTime64(3, 'UTC')})
-- One row per device with an experiment_exposure of the experiment in [range_start, range_end) that
-- was not forced (properties.assignment_source != 'forced'; forced exposures are ignored entirely).
-- variant: its exposures' variant, the first one's if several; first_exposure_at: the earliest.
-- contaminated = 1 when the device was seen in two arms: two variants among its exposures; an event
-- at or after its first exposure (and before range_end) whose experiments map names another variant
-- of this experiment; or a user_id on any of its events in the range that is also on a unit of
-- another arm, which contaminates every unit of that user_id (a person is never in both arms).
CREATE OR REPLACE VIEW experiment_units${on_cluster} AS
WITH
    exposures AS (
        SELECT anonymous_id AS unit_id, toString(variant) AS arm, event_ts AS exposed_at
        FROM events FINAL
        WHERE event_type = 'experiment_exposure'
            AND experiment_key = {experiment_key:String}
            AND variant IS NOT NULL
            AND event_ts >= {range_start:DateTime64(3, 'UTC')} AND event_ts < {range_end:DateTime64(3, 'UTC')}
            AND JSONExtractString(properties, 'assignment_source') != 'forced'
    ),
    devices AS (
        SELECT
            unit_id,
            argMin(arm, (exposed_at, arm)) AS unit_variant,
            min(exposed_at) AS unit_first_exposure_at,
            uniqExact(arm) > 1 AS exposed_to_two
        FROM exposures
        GROUP BY unit_id
    ),
    seen AS (
        SELECT
            d.unit_id AS seen_unit_id,
            any(d.unit_variant) AS seen_variant,
            max(e.event_at >= d.unit_first_exposure_at AND e.named_arm NOT IN ('', d.unit_variant)) AS named_other,
            groupUniqArrayIf(assumeNotNull(e.event_user_id), e.event_user_id IS NOT NULL) AS user_ids
        FROM
        (
            SELECT
                anonymous_id AS event_unit_id,
                user_id AS event_user_id,
                event_ts AS event_at,
                toString(experiments[{experiment_key:String}]) AS named_arm
            FROM events FINAL
            WHERE event_ts >= {range_start:DateTime64(3, 'UTC')} AND event_ts < {range_end:DateTime64(3, 'UTC')}
                AND anonymous_id IN (SELECT unit_id FROM exposures)
        ) AS e
        INNER JOIN devices AS d ON d.unit_id = e.event_unit_id
        GROUP BY d.unit_id
    ),
    people AS (
        SELECT seen_unit_id AS person_unit_id, seen_variant AS person_variant, person_id
        FROM seen
        ARRAY JOIN user_ids AS person_id
    ),
    split_people AS (
        SELECT person_id FROM people GROUP BY person_id HAVING uniqExact(person_variant) > 1
    )
SELECT
    d.unit_id AS anonymous_id,
    d.unit_variant AS variant,
    d.unit_first_exposure_at AS first_exposure_at,
    toUInt8(
        d.exposed_to_two
        OR s.named_other
        OR d.unit_id IN (SELECT person_unit_id FROM people WHERE person_id IN (SELECT person_id FROM split_people))
    ) AS contaminated
FROM devices AS d
LEFT JOIN seen AS s ON s.seen_unit_id = d.unit_id;

-- Task time of an experiment's clean units, called as
--   experiment_task_durations(experiment_key = {experiment:String},
--                             range_start = {from:DateTime64(3, 'UTC')}, range_end = {to:DateTime64(3, 'UTC')})
-- task_durations rows of the images whose device is a unit with contaminated = 0, whose first tool
-- click is at or after the unit's first exposure and in [range_start, range_end). The per-variant
-- task time summary and the experiment analysis both read this, so their counts and means agree.
CREATE OR REPLACE VIEW experiment_task_durations${on_cluster} AS
SELECT
    d.input_id AS input_id,
    d.anonymous_id AS anonymous_id,
    u.variant AS variant,
    d.first_tool_click_at AS first_tool_click_at,
    d.saved_at AS saved_at,
    d.diff_second AS diff_second
FROM task_durations AS d
INNER JOIN experiment_units(
    experiment_key = {experiment_key:String},
    range_start = {range_start:DateTime64(3, 'UTC')},
    range_end = {range_end:DateTime64(3, 'UTC')}
) AS u ON u.anonymous_id = d.anonymous_id
WHERE u.contaminated = 0
    AND d.first_tool_click_at >= u.first_exposure_at
    AND d.first_tool_click_at >= {range_start:DateTime64(3, 'UTC')}
    AND d.first_tool_click_at < {range_end:DateTime64(3, 'UTC')};
