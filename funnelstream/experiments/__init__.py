"""The shared vocabulary of A/B experiments: definitions, GrowthBook-compatible hashing, settings.

Assignment and exposure logging run in the collector (``ingest.experiments``); the analysis runs
in the warehouse (``clickhouse.experiments``).
"""
