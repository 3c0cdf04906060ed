-- Seed Tables 5 and 6. The compacted topics are the record; the loader copies every version here
-- and the dictionaries serve the latest one for query-time joins (dictGet).

-- shard by: tool_id
CREATE TABLE IF NOT EXISTS tools${on_cluster}
(
    tool_id UInt32,
    tool_name String,
    tool_type LowCardinality(String),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY tool_id;

-- shard by: inference_id
CREATE TABLE IF NOT EXISTS inferences${on_cluster}
(
    inference_id UInt32,
    inference_name String,
    inference_type LowCardinality(String),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY inference_id;

CREATE DICTIONARY IF NOT EXISTS tools_dict${on_cluster}
(
    tool_id UInt64,
    tool_name String,
    tool_type String
)
PRIMARY KEY tool_id
SOURCE(CLICKHOUSE(QUERY 'SELECT tool_id, argMax(tool_name, updated_at) AS tool_name, argMax(tool_type, updated_at) AS tool_type FROM ${database}.tools GROUP BY tool_id'))
LAYOUT(HASHED())
LIFETIME(MIN 30 MAX 120);

CREATE DICTIONARY IF NOT EXISTS inferences_dict${on_cluster}
(
    inference_id UInt64,
    inference_name String,
    inference_type String
)
PRIMARY KEY inference_id
SOURCE(CLICKHOUSE(QUERY 'SELECT inference_id, argMax(inference_name, updated_at) AS inference_name, argMax(inference_type, updated_at) AS inference_type FROM ${database}.inferences GROUP BY inference_id'))
LAYOUT(HASHED())
LIFETIME(MIN 30 MAX 120);
