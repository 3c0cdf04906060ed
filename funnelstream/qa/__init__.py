"""Data quality and pipeline observability: QA checks over the warehouse, the heartbeat that
measures end-to-end freshness, and the one-screen status of every stage."""
