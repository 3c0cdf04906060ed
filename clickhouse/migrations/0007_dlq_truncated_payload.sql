-- A dead letter whose payload would not fit in a Kafka message is stored with its payload cut
-- (funnelstream.kafka.dead_letter): the flag says so and payload_bytes keeps the original size.
ALTER TABLE dlq_events${on_cluster}
    ADD COLUMN IF NOT EXISTS payload_truncated Bool DEFAULT false AFTER payload_encoding,
    ADD COLUMN IF NOT EXISTS payload_bytes Nullable(UInt64) AFTER payload_truncated;
