-- The seed's normalized fact tables (Tables 1-4 and scores), filled by materialized views of
-- `events` on every insert. Each target dedups on the event's own key like `events` does; read
-- with FINAL (or GROUP BY the key) for exact answers before merges.

-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS input_uploads${on_cluster}
(
    input_id UUID,
    event_id UUID,
    anonymous_id String,
    user_id Nullable(String),
    session_id String,
    uploaded_at DateTime64(3, 'UTC'),
    input_url Nullable(String),
    width Nullable(UInt32),
    height Nullable(UInt32),
    size_bytes Nullable(UInt64),
    content_type LowCardinality(Nullable(String)),
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(uploaded_at)
ORDER BY (input_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS input_uploads_mv${on_cluster} TO input_uploads AS
SELECT assumeNotNull(input_id) AS input_id, event_id, anonymous_id, user_id, session_id, event_ts AS uploaded_at,
       input_url, width, height, size_bytes, content_type, source
FROM events
WHERE event_type = 'image_uploaded' AND input_id IS NOT NULL;

-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS tool_clicks${on_cluster}
(
    input_id UUID,
    event_id UUID,
    anonymous_id String,
    session_id String,
    tool_id UInt32,
    tool_name LowCardinality(Nullable(String)),
    tool_type LowCardinality(Nullable(String)),
    clicked_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(clicked_at)
ORDER BY (input_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS tool_clicks_mv${on_cluster} TO tool_clicks AS
SELECT assumeNotNull(input_id) AS input_id, event_id, anonymous_id, session_id, assumeNotNull(tool_id) AS tool_id,
       tool_name, tool_type, event_ts AS clicked_at
FROM events
WHERE event_type = 'tool_selected' AND input_id IS NOT NULL AND tool_id IS NOT NULL;

-- One row per inference job: the click (mask URL) and, when it completes, the result URL.
-- Both events fold into the job's row; every column is idempotent under replays (min, max, any).
-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS inference_clicks${on_cluster}
(
    job_id UUID,
    input_id UUID,
    anonymous_id String,
    inference_id SimpleAggregateFunction(max, UInt32),
    inference_name SimpleAggregateFunction(any, Nullable(String)),
    inference_type SimpleAggregateFunction(any, Nullable(String)),
    requested_at SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    completed_at SimpleAggregateFunction(max, Nullable(DateTime64(3, 'UTC'))),
    mask_url SimpleAggregateFunction(any, Nullable(String)),
    result_url SimpleAggregateFunction(any, Nullable(String)),
    status SimpleAggregateFunction(any, Nullable(String)),
    model_name SimpleAggregateFunction(any, Nullable(String)),
    model_version SimpleAggregateFunction(any, Nullable(String)),
    latency_ms SimpleAggregateFunction(max, Nullable(Float64))
)
ENGINE = AggregatingMergeTree
ORDER BY (anonymous_id, input_id, job_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS inference_clicks_mv${on_cluster} TO inference_clicks AS
SELECT assumeNotNull(job_id) AS job_id, assumeNotNull(input_id) AS input_id, anonymous_id,
       assumeNotNull(inference_id) AS inference_id, inference_name, inference_type,
       if(event_type = 'inference_requested', event_ts, NULL) AS requested_at,
       if(event_type = 'inference_completed', event_ts, NULL) AS completed_at,
       mask_url, inference_url AS result_url, status, model_name, model_version, latency_ms
FROM events
WHERE event_type IN ('inference_requested', 'inference_completed')
  AND job_id IS NOT NULL AND input_id IS NOT NULL AND inference_id IS NOT NULL;

-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS save_clicks${on_cluster}
(
    input_id UUID,
    event_id UUID,
    anonymous_id String,
    session_id String,
    job_id Nullable(UUID),
    saved_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(saved_at)
ORDER BY (input_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS save_clicks_mv${on_cluster} TO save_clicks AS
SELECT assumeNotNull(input_id) AS input_id, event_id, anonymous_id, session_id, job_id, event_ts AS saved_at
FROM events
WHERE event_type = 'image_saved' AND input_id IS NOT NULL;

-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS scores${on_cluster}
(
    input_id UUID,
    event_id UUID,
    anonymous_id String,
    job_id Nullable(UUID),
    score UInt8,
    scored_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(scored_at)
ORDER BY (input_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS scores_mv${on_cluster} TO scores AS
SELECT assumeNotNull(input_id) AS input_id, event_id, anonymous_id, job_id, assumeNotNull(score) AS score,
       event_ts AS scored_at
FROM events
WHERE event_type = 'score_submitted' AND input_id IS NOT NULL AND score IS NOT NULL;

-- shard by: cityHash64(anonymous_id)
CREATE TABLE IF NOT EXISTS experiment_exposures${on_cluster}
(
    experiment_key LowCardinality(String),
    variant LowCardinality(String),
    anonymous_id String,
    user_id Nullable(String),
    event_id UUID,
    exposed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(exposed_at)
ORDER BY (experiment_key, anonymous_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS experiment_exposures_mv${on_cluster} TO experiment_exposures AS
SELECT assumeNotNull(experiment_key) AS experiment_key, assumeNotNull(variant) AS variant, anonymous_id, user_id,
       event_id, event_ts AS exposed_at
FROM events
WHERE event_type = 'experiment_exposure' AND experiment_key IS NOT NULL AND variant IS NOT NULL;
