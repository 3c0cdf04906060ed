"""ClickHouse warehouse: migrations, the loader, named queries and the query API."""
