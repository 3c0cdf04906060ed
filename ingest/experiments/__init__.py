"""Experiments inside the collector: assignment (``assignment``), the sticky store (``store``) and
``GET /v1/assignments`` with its exposure logging (``routes``).

Invariant: an exposure is logged once per (experiment, phase, unit), on the events topic, before
the unit is told its variant. Definitions, hashing and analysis live elsewhere (``funnelstream.experiments``,
``clickhouse.experiments``).
"""
