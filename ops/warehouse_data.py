"""Transitional names for :func:`ops.journeys.clickstream`; import from ``ops.journeys``."""

from ops.journeys import CLICKSTREAM_START as START
from ops.journeys import EXPERIMENT_KEY as EXPERIMENT
from ops.journeys import Deliveries as GeneratedData
from ops.journeys import clickstream as generate

__all__ = ["EXPERIMENT", "START", "GeneratedData", "generate"]
