"""ingest/experiments"""
