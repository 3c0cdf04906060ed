-- task_time_images: the images of the task_durations view (the one definition of task time, capped)
-- whose first tool click is in [range_start, range_end), each with the groups the workspace breaks
-- task time down by, called as
--   task_time_images(experiment_key = {experiment:String},
--                    range_start = {from:DateTime64(3, 'UTC')}, range_end = {to:DateTime64(3, 'UTC')})
-- tool: the tool of the image's first tool click that names one (the smallest name on a tie),
-- '(none)' without one, as task_time_summary's tool breakdown. variant: the image's arm in
-- experiment_task_durations over the same experiment and range (an image of a clean unit, clicked
-- at or after its first exposure), as task_time_summary's variant breakdown; '' for every other
-- image. diff_second, saved_at and over_cap are task_durations' own: nothing is redefined here.
-- Aliases inside never reuse a column name of events: ClickHouse would substitute them in WHERE.
CREATE OR REPLACE VIEW task_time_images${on_cluster} AS
SELECT
    d.input_id AS input_id,
    d.anonymous_id AS anonymous_id,
    d.first_tool_click_at AS first_tool_click_at,
    d.saved_at AS saved_at,
    d.diff_second AS diff_second,
    d.over_cap AS over_cap,
    if(empty(t.first_tool), '(none)', t.first_tool) AS tool,
    ifNull(x.arm, '') AS variant
FROM task_durations AS d
LEFT JOIN
(
    SELECT
        assumeNotNull(input_id) AS tool_input_id,
        argMin(toString(tool_name), (event_ts, toString(tool_name))) AS first_tool
    FROM events FINAL
    WHERE input_id IS NOT NULL AND event_type = 'tool_selected' AND tool_name IS NOT NULL
    GROUP BY tool_input_id
) AS t ON t.tool_input_id = d.input_id
LEFT JOIN
(
    SELECT input_id AS arm_input_id, variant AS arm
    FROM experiment_task_durations(
        experiment_key = {experiment_key:String},
        range_start = {range_start:DateTime64(3, 'UTC')},
        range_end = {range_end:DateTime64(3, 'UTC')}
    )
) AS x ON x.arm_input_id = d.input_id
WHERE d.first_tool_click_at >= {range_start:DateTime64(3, 'UTC')}
    AND d.first_tool_click_at < {range_end:DateTime64(3, 'UTC')};
