-- The units of one experiment in its analysed window (the current phase), as the experiment_units
-- view defines them (docs/analytics-definitions.md, "Experiment units"): one row per exposed device,
-- its arm, its first exposure, and whether it was seen in two arms (then it is counted, not analysed).
SELECT
    anonymous_id,
    toString(variant) AS variant,
    first_exposure_at,
    toBool(contaminated) AS contaminated
FROM experiment_units(
    experiment_key = {experiment_key:String},
    range_start = {from:DateTime64(3, 'UTC')},
    range_end = {to:DateTime64(3, 'UTC')}
)
ORDER BY anonymous_id
