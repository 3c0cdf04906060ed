-- The units that dropped at step {step} (docs/analytics-definitions.md, "Drop-off"): the units of
-- the view funnel_units (migration 0011) whose level is {step} - 1, so they reached the step before
-- and not this one within the window of any entry. entered_at and last_step_at: their conversion
-- path's step-1 and step-({step} - 1) times. Earliest entries first, at most {limit} rows.
SELECT
    unit_id,
    anonymous_id,
    fromUnixTimestamp64Milli(toInt64(path[1]), 'UTC') AS entered_at,
    fromUnixTimestamp64Milli(toInt64(path[{step:UInt8} - 1]), 'UTC') AS last_step_at
FROM funnel_units(
    step1 = {step1:String}, step2 = {step2:String}, step3 = {step3:String}, step4 = {step4:String},
    step5 = {step5:String}, from = {from:DateTime64(3, 'UTC')}, to = {to:DateTime64(3, 'UTC')},
    window_s = {window_s:UInt64}, unit = {unit:String}, breakdown = {breakdown:String},
    experiment = {experiment:String}, exclude = {exclude:String}, mode = {mode:String},
    filter_tool = {filter_tool:String}, filter_inference_type = {filter_inference_type:String},
    filter_variant = {filter_variant:String}, filter_source = {filter_source:String},
    filter_browser = {filter_browser:String}, filter_os = {filter_os:String},
    filter_device = {filter_device:String}, filter_size = {filter_size:String})
WHERE level = {step:UInt8} - 1
ORDER BY entered_at, unit_id
LIMIT {limit:UInt32}
