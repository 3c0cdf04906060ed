"""clickhouse/qa"""
