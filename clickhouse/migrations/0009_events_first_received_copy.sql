-- Which copy of a resent event counts (docs/analytics-definitions.md, "Events: which copy counts"):
-- the first received, the smallest received_at and on a tie the smallest event_ts. 0001 made
-- `events` a ReplacingMergeTree(enriched_at), which keeps the last enriched copy at a merge, while
-- queries reading min() before a merge saw the earliest: an answer changed with OPTIMIZE. A table's
-- version column cannot be altered, so `events` is rebuilt here with a version that ranks the first
-- received highest (copy_rank below), its rows copied, and the names swapped. FINAL and merges then
-- keep the same copy.
-- copy_rank = NOT((received_at ms << 64) | event_ts ms), each millisecond count moved to unsigned
-- order (xor of the sign bit), so a smaller (received_at, event_ts) is a larger rank. It is
-- MATERIALIZED: inserts name the contract's columns only (clickhouse/loader.py) and `SELECT *`
-- leaves it out. Copies equal in both keep the last inserted, and are equal in what queries read.
-- Rows inserted while it runs are not lost: a materialized view forwards every insert into the old
-- table to the new one until the swap. The materialized views of 0002 stay on the old table while
-- the copy runs (the copy goes to the new table, so it feeds no fact table twice), are dropped just
-- before the swap and created again on the new `events` just after it; only a row inserted in
-- between misses the fact tables, which no named query reads (the loader runs migrate before it
-- starts, so a single loader leaves no such gap).
-- Statements are ordered so that a run stopped part-way completes when run again: the copy can be
-- repeated (copies collapse on the sorting key) and the old table is only dropped after the swap.
-- On a cluster the local tables are rebuilt and renamed; the Distributed `events` keeps reading
-- `events_local` by name, so after the swap it reads the new one.

-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS events_ranked${on_cluster}
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
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC'),
    -- The first received copy ranks highest: ReplacingMergeTree keeps the largest version.
    copy_rank UInt128 MATERIALIZED bitNot(bitOr(
        bitShiftLeft(toUInt128(bitXor(reinterpretAsUInt64(toUnixTimestamp64Milli(received_at)), 9223372036854775808)), 64),
        toUInt128(bitXor(reinterpretAsUInt64(toUnixTimestamp64Milli(event_ts)), 9223372036854775808))
    ))
)
ENGINE = ReplacingMergeTree(copy_rank)
PARTITION BY toYYYYMM(client_ts)
ORDER BY (toDate(client_ts), anonymous_id, client_ts, event_id);

-- Rows the loader inserts while the copy runs reach the new table too: this view forwards every
-- insert into the old table until the swap (a row both forwarded and copied collapses).
CREATE MATERIALIZED VIEW IF NOT EXISTS events_forward_0009${on_cluster} TO events_ranked AS
SELECT
    event_id, event_type, schema_version, anonymous_id, user_id, input_id, session_id, client_ts,
    sent_at, received_at, event_ts, timestamp_flag, is_late, source, funnel_step, tool_id,
    tool_name, tool_type, inference_id, inference_name, inference_type, unknown_dimension, job_id, input_url,
    mask_url, inference_url, width, height, size_bytes, content_type, proposal_count, status,
    latency_ms, model_name, model_version, error, score, experiment_key, variant, experiments,
    page_url, referrer, user_agent, browser, os, device, is_bot, locale,
    app_version, library_name, library_version, ip, properties, enriched_at, inserted_at
FROM events;

-- On a cluster each shard copies its own rows (parallel_distributed_insert_select = 2).
INSERT INTO events_ranked
(
    event_id, event_type, schema_version, anonymous_id, user_id, input_id, session_id, client_ts,
    sent_at, received_at, event_ts, timestamp_flag, is_late, source, funnel_step, tool_id,
    tool_name, tool_type, inference_id, inference_name, inference_type, unknown_dimension, job_id, input_url,
    mask_url, inference_url, width, height, size_bytes, content_type, proposal_count, status,
    latency_ms, model_name, model_version, error, score, experiment_key, variant, experiments,
    page_url, referrer, user_agent, browser, os, device, is_bot, locale,
    app_version, library_name, library_version, ip, properties, enriched_at, inserted_at
)
SETTINGS parallel_distributed_insert_select = 2
SELECT
    event_id, event_type, schema_version, anonymous_id, user_id, input_id, session_id, client_ts,
    sent_at, received_at, event_ts, timestamp_flag, is_late, source, funnel_step, tool_id,
    tool_name, tool_type, inference_id, inference_name, inference_type, unknown_dimension, job_id, input_url,
    mask_url, inference_url, width, height, size_bytes, content_type, proposal_count, status,
    latency_ms, model_name, model_version, error, score, experiment_key, variant, experiments,
    page_url, referrer, user_agent, browser, os, device, is_bot, locale,
    app_version, library_name, library_version, ip, properties, enriched_at, inserted_at
FROM events;

DROP TABLE IF EXISTS events_before_0009${on_cluster} SYNC;

-- The fact tables' views go with the old table; they are created again on the new one below.
DROP VIEW IF EXISTS input_uploads_mv${on_cluster};
DROP VIEW IF EXISTS tool_clicks_mv${on_cluster};
DROP VIEW IF EXISTS inference_clicks_mv${on_cluster};
DROP VIEW IF EXISTS save_clicks_mv${on_cluster};
DROP VIEW IF EXISTS scores_mv${on_cluster};
DROP VIEW IF EXISTS experiment_exposures_mv${on_cluster};

RENAME TABLE events TO events_before_0009, events_ranked TO events${on_cluster};

-- The old table takes no more inserts: its forwarding view goes.
DROP VIEW IF EXISTS events_forward_0009${on_cluster};

-- Gone after the rename on one node; on a cluster, the Distributed table of the copy.
DROP TABLE IF EXISTS events_ranked${on_cluster} SYNC;

CREATE MATERIALIZED VIEW IF NOT EXISTS input_uploads_mv${on_cluster} TO input_uploads AS
SELECT assumeNotNull(input_id) AS input_id, event_id, anonymous_id, user_id, session_id, event_ts AS uploaded_at,
       input_url, width, height, size_bytes, content_type, source
FROM events
WHERE event_type = 'image_uploaded' AND input_id IS NOT NULL;

CREATE MATERIALIZED VIEW IF NOT EXISTS tool_clicks_mv${on_cluster} TO tool_clicks AS
SELECT assumeNotNull(input_id) AS input_id, event_id, anonymous_id, session_id, assumeNotNull(tool_id) AS tool_id,
       tool_name, tool_type, event_ts AS clicked_at
FROM events
WHERE event_type = 'tool_selected' AND input_id IS NOT NULL AND tool_id IS NOT NULL;

CREATE MATERIALIZED VIEW IF NOT EXISTS inference_clicks_mv${on_cluster} TO inference_clicks AS
SELECT assumeNotNull(job_id) AS job_id, assumeNotNull(input_id) AS input_id, anonymous_id,
       assumeNotNull(inference_id) AS inference_id, inference_name, inference_type,
       if(event_type = 'inference_requested', event_ts, NULL) AS requested_at,
       if(event_type = 'inference_completed', event_ts, NULL) AS completed_at,
       mask_url, inference_url AS result_url, status, model_name, model_version, latency_ms
FROM events
WHERE event_type IN ('inference_requested', 'inference_completed')
  AND job_id IS NOT NULL AND input_id IS NOT NULL AND inference_id IS NOT NULL;

CREATE MATERIALIZED VIEW IF NOT EXISTS save_clicks_mv${on_cluster} TO save_clicks AS
SELECT assumeNotNull(input_id) AS input_id, event_id, anonymous_id, session_id, job_id, event_ts AS saved_at
FROM events
WHERE event_type = 'image_saved' AND input_id IS NOT NULL;

CREATE MATERIALIZED VIEW IF NOT EXISTS scores_mv${on_cluster} TO scores AS
SELECT assumeNotNull(input_id) AS input_id, event_id, anonymous_id, job_id, assumeNotNull(score) AS score,
       event_ts AS scored_at
FROM events
WHERE event_type = 'score_submitted' AND input_id IS NOT NULL AND score IS NOT NULL;

CREATE MATERIALIZED VIEW IF NOT EXISTS experiment_exposures_mv${on_cluster} TO experiment_exposures AS
SELECT assumeNotNull(experiment_key) AS experiment_key, assumeNotNull(variant) AS variant, anonymous_id, user_id,
       event_id, event_ts AS exposed_at
FROM events
WHERE event_type = 'experiment_exposure' AND experiment_key IS NOT NULL AND variant IS NOT NULL;

DROP TABLE IF EXISTS events_before_0009${on_cluster} SYNC;
