"""Faust stream processors: dedup, dimension enrichment and sessionization."""
