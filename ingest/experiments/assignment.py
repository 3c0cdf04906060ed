"""Deterministic, sticky assignment of units to variants (docs/design.md, "Experiments").

The unit is the device's ``anonymous_id``; it does not change at login, so hashing alone keeps a
device in one arm. A person on several devices is held in one arm by the store: the first arm a
``user_id`` is seen in is written under ``user:<id>`` and wins on every device that user logs in
from afterwards; that device then keeps the arm after logout too (``anon:<id>``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from funnelstream.experiments.definitions import Definitions, Experiment
from funnelstream.experiments.hashing import choose_variation, gb_hash, in_namespace
from ingest.experiments.store import AssignmentStore, StoredAssignment, anonymous_unit, user_unit


class AssignmentSource(enum.StrEnum):
    FORCED = "forced"
    USER_STICKY = "user_sticky"
    DEVICE_STICKY = "device_sticky"
    HASH = "hash"
    NOT_IN_NAMESPACE = "not_in_namespace"
    NOT_COVERED = "not_covered"


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment_key: str
    variant: str | None
    """``None`` when the unit is outside the experiment (namespace or coverage)."""
    source: AssignmentSource
    phase: int
    bucket: float | None = None

    @property
    def in_experiment(self) -> bool:
        return self.variant is not None


def hash_assignment(experiment: Experiment, anonymous_id: str) -> Assignment:
    """The assignment GrowthBook's SDKs would make for this unit: no store, no forcing."""
    if experiment.namespace is not None and not in_namespace(anonymous_id, experiment.namespace.as_tuple()):
        return Assignment(experiment.key, None, AssignmentSource.NOT_IN_NAMESPACE, experiment.phase)
    bucket = gb_hash(experiment.hash_seed, anonymous_id, experiment.hash_version)
    assert bucket is not None  # hash_version is validated to 1 or 2
    index = choose_variation(bucket, experiment.ranges)
    if index < 0:
        return Assignment(experiment.key, None, AssignmentSource.NOT_COVERED, experiment.phase, bucket)
    return Assignment(experiment.key, experiment.variant_keys[index], AssignmentSource.HASH, experiment.phase, bucket)


class Assigner:
    def __init__(self, definitions: Callable[[], Definitions], store: AssignmentStore) -> None:
        self._definitions = definitions
        self.store = store

    def _stored(self, experiment: Experiment, unit: str) -> str | None:
        stored = self.store.get(experiment.key, unit)
        if stored is None or stored.phase != experiment.phase or stored.variant not in experiment.variant_keys:
            return None
        return stored.variant

    def assign(self, experiment: Experiment, anonymous_id: str, user_id: str | None = None) -> Assignment:
        forced = experiment.forced_variants.get(user_id or "") or experiment.forced_variants.get(anonymous_id)
        if forced is not None:
            return Assignment(experiment.key, forced, AssignmentSource.FORCED, experiment.phase)
        if user_id:
            held = self._stored(experiment, user_unit(user_id))
            if held is not None:
                # Keep this device in the user's arm after logout as well.
                self.store.put_if_absent(
                    StoredAssignment(experiment.key, anonymous_unit(anonymous_id), held, experiment.phase)
                )
                return Assignment(experiment.key, held, AssignmentSource.USER_STICKY, experiment.phase)
        device = self._stored(experiment, anonymous_unit(anonymous_id))
        if device is not None:
            result = Assignment(experiment.key, device, AssignmentSource.DEVICE_STICKY, experiment.phase)
        else:
            result = hash_assignment(experiment, anonymous_id)
        if user_id and result.variant is not None:
            winner = self.store.put_if_absent(
                StoredAssignment(experiment.key, user_unit(user_id), result.variant, experiment.phase)
            )
            if winner.variant != result.variant:
                # Another device of this user was assigned first, a moment ago; its arm wins.
                return Assignment(experiment.key, winner.variant, AssignmentSource.USER_STICKY, experiment.phase)
        return result

    def assign_running(
        self,
        anonymous_id: str,
        user_id: str | None = None,
        now: datetime | None = None,
        definitions: Definitions | None = None,
    ) -> list[Assignment]:
        """Assignments in every running experiment of ``definitions`` (default: the ones in force)."""
        definitions = definitions or self._definitions()
        return [self.assign(e, anonymous_id, user_id) for e in definitions.running(now)]
