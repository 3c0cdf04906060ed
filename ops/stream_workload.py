"""Transitional names for :func:`ops.journeys.raw_stream`; import from ``ops.journeys``."""

from ops.journeys import RawStream as Workload
from ops.journeys import raw_stream as generate

__all__ = ["Workload", "generate"]
