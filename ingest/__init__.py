"""Ingest collector: HTTP in, validated and stamped events durably into Kafka."""
