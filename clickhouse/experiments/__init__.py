"""clickhouse/experiments"""
