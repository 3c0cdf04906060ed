-- The wide table every funnel query reads: one row per enriched event, columns named exactly as
-- the fields of funnelstream.contract.EnrichedEvent.
-- The sorting key holds only client-supplied, resend-stable fields and ends in the dedup key
-- (client_ts, event_id), so any replay of an event lands on the same key and collapses at merge.
-- Partitions follow client_ts for the same reason: a duplicate must fall in the same partition.
-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS events${on_cluster}
(
    event_id UUID,
    event_type LowCardinality(String),
    schema_version UInt16,
    anonymous_id String,
    user_id Nullable(String),
    input_id Nullable(UUID),
    session_id String,
    client_ts DateTime64(3, 'UTC'),
    sent_at Nullable(DateTime64(3, 'UTC')),
    received_at DateTime64(3, 'UTC'),
    event_ts DateTime64(3, 'UTC'),
    timestamp_flag LowCardinality(String),
    is_late Bool,
    source LowCardinality(String),
    funnel_step UInt8,
    tool_id Nullable(UInt32),
    tool_name LowCardinality(Nullable(String)),
    tool_type LowCardinality(Nullable(String)),
    inference_id Nullable(UInt32),
    inference_name LowCardinality(Nullable(String)),
    inference_type LowCardinality(Nullable(String)),
    unknown_dimension Bool,
    job_id Nullable(UUID),
    input_url Nullable(String),
    mask_url Nullable(String),
    inference_url Nullable(String),
    width Nullable(UInt32),
    height Nullable(UInt32),
    size_bytes Nullable(UInt64),
    content_type LowCardinality(Nullable(String)),
    proposal_count Nullable(UInt32),
    status LowCardinality(Nullable(String)),
    latency_ms Nullable(Float64),
    model_name LowCardinality(Nullable(String)),
    model_version LowCardinality(Nullable(String)),
    error Nullable(String),
    score Nullable(UInt8),
    experiment_key LowCardinality(Nullable(String)),
    variant LowCardinality(Nullable(String)),
    experiments Map(LowCardinality(String), LowCardinality(String)),
    page_url Nullable(String),
    referrer Nullable(String),
    user_agent Nullable(String),
    browser LowCardinality(Nullable(String)),
    os LowCardinality(Nullable(String)),
    device LowCardinality(Nullable(String)),
    is_bot Bool,
    locale LowCardinality(Nullable(String)),
    app_version LowCardinality(Nullable(String)),
    library_name LowCardinality(Nullable(String)),
    library_version LowCardinality(Nullable(String)),
    ip Nullable(String),
    properties String,
    enriched_at DateTime64(3, 'UTC'),
    -- When the row became visible here; freshness is inserted_at - received_at.
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(enriched_at)
PARTITION BY toYYYYMM(client_ts)
ORDER BY (toDate(client_ts), anonymous_id, client_ts, event_id);
