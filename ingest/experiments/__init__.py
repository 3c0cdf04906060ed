"""Experiments inside the collector: assignment (``assignment``), the sticky store (``store``),
exposure logging (``exposures``) and ``GET /v1/assignments`` (``routes``).

Invariant: an exposure is logged once per (experiment, phase, unit), on the events topic, before
the unit is told its variant. Definitions and hashing live in ``funnelstream.experiments``, the
analysis in ``clickhouse.experiments``.
"""
