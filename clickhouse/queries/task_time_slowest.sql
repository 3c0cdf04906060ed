-- The slowest images (docs/analytics-definitions.md, "Task time"): the saved images of
-- task_time_images (first tool click in [from, to); a task over the cap has no task time and is not
-- listed) by task time, longest first (input_id on a tie), at most {limit}. tool: the image's first
-- tool; variant: its arm in experiment {experiment}, '' when it is not an image of a clean unit.
-- tool and variant filter when not ''.
SELECT
    input_id,
    diff_second AS seconds,
    tool,
    variant,
    anonymous_id,
    first_tool_click_at,
    saved_at
FROM task_time_images(
    experiment_key = {experiment:String},
    range_start = {from:DateTime64(3, 'UTC')},
    range_end = {to:DateTime64(3, 'UTC')}
)
WHERE diff_second IS NOT NULL
    AND ({tool:String} = '' OR tool = {tool:String})
    AND ({variant:String} = '' OR variant = {variant:String})
ORDER BY seconds DESC, input_id
LIMIT {limit:UInt64}
