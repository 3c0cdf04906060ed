-- One row per session; every update of a session is inserted and the highest `version` wins.
-- No partition key: a session's start can move earlier when a late event merges in, and a
-- duplicate must stay in the same partition to collapse.
-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS sessions${on_cluster}
(
    session_id String,
    anonymous_id String,
    user_id Nullable(String),
    started_at DateTime64(3, 'UTC'),
    last_event_at DateTime64(3, 'UTC'),
    duration_s Float64,
    event_count UInt32,
    late_event_count UInt32,
    input_ids Array(UUID),
    deepest_step UInt8,
    deepest_step_name LowCardinality(String),
    experiments Map(LowCardinality(String), LowCardinality(String)),
    closed Bool,
    version UInt64,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (anonymous_id, session_id);

-- Everything any stage refused, with why; keyed by its place in events.dlq so a loader replay
-- collapses.
-- shard by: rand()
CREATE TABLE IF NOT EXISTS dlq_events${on_cluster}
(
    stage LowCardinality(String),
    reason String,
    errors Array(Tuple(field String, reason String)),
    payload String,
    payload_encoding LowCardinality(String),
    original_key Nullable(String),
    topic LowCardinality(Nullable(String)),
    partition Nullable(Int32),
    offset Nullable(Int64),
    source LowCardinality(Nullable(String)),
    event_id Nullable(String),
    failed_at DateTime64(3, 'UTC'),
    dlq_partition Int32,
    dlq_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (stage, failed_at, dlq_partition, dlq_offset);
