-- One row per data-quality check per `funnelstream qa run`: what was measured over which window,
-- against which threshold, and whether it passed. `details` holds the worst findings as JSON.
-- shard by: cityHash64(check_name)
CREATE TABLE IF NOT EXISTS qa_results${on_cluster}
(
    run_id UUID,
    run_at DateTime64(3, 'UTC'),
    window_from DateTime64(3, 'UTC'),
    window_to DateTime64(3, 'UTC'),
    check_name LowCardinality(String),
    severity LowCardinality(String),
    status LowCardinality(String),
    threshold Float64,
    value Float64,
    subject String,
    affected UInt64,
    total UInt64,
    failing_subjects UInt32,
    details String,
    duration_ms Float64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(run_at)
ORDER BY (check_name, run_at)
TTL toDateTime(run_at) + INTERVAL 400 DAY;
