-- The client dimensions of one experiment's exposed units, clean or not, for sample-ratio checks by
-- dimension: one row per unit of experiment_units (docs/analytics-definitions.md, "Experiment
-- units"), with the browser, os, device and source of its first exposure (the same exposure the
-- view takes: the earliest non-forced one in [from, to), the smallest variant on a tie).
-- An exposure the collector logs at assignment carries no user agent and the source
-- 'experiments' (the logger, not the client), so a value missing there is the one on the unit's
-- earliest event in the window that has it; a value found nowhere is 'unknown'.
-- One pass over the window's events, grouped by device: no join, however many units.
SELECT
    anonymous_id,
    if(exposure_browser != '', exposure_browser, if(seen_browser != '', seen_browser, 'unknown')) AS browser,
    if(exposure_os != '', exposure_os, if(seen_os != '', seen_os, 'unknown')) AS os,
    if(exposure_device != '', exposure_device, if(seen_device != '', seen_device, 'unknown')) AS device,
    if(exposure_source != '', exposure_source, if(seen_source != '', seen_source, 'unknown')) AS source
FROM
(
    SELECT
        anonymous_id,
        argMinIf(dims, (event_ts, arm), counted) AS first_dims,
        first_dims.1 AS exposure_browser,
        first_dims.2 AS exposure_os,
        first_dims.3 AS exposure_device,
        first_dims.4 AS exposure_source,
        argMinIf(dims.1, event_ts, dims.1 != '') AS seen_browser,
        argMinIf(dims.2, event_ts, dims.2 != '') AS seen_os,
        argMinIf(dims.3, event_ts, dims.3 != '') AS seen_device,
        argMinIf(dims.4, event_ts, dims.4 != '') AS seen_source
    FROM
    (
        SELECT
            anonymous_id,
            event_ts,
            toString(ifNull(variant, '')) AS arm,
            -- The exposures experiment_units counts (same filter), and no other.
            event_type = 'experiment_exposure'
                AND experiment_key = {experiment_key:String}
                AND variant IS NOT NULL
                AND JSONExtractString(properties, 'assignment_source') != 'forced' AS counted,
            tuple(
                toString(ifNull(browser, '')),
                toString(ifNull(os, '')),
                toString(ifNull(device, '')),
                if(toString(source) = 'experiments', '', toString(source))
            ) AS dims
        FROM events FINAL
        WHERE event_ts >= {from:DateTime64(3, 'UTC')} AND event_ts < {to:DateTime64(3, 'UTC')}
    )
    GROUP BY anonymous_id
    HAVING countIf(counted) > 0
)
ORDER BY anonymous_id
