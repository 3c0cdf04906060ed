"""Experiment definitions: a versioned YAML file, validated, and the rules for changing it.

The file is the record; every collector watches it (:class:`DefinitionsWatcher`) and swaps in a
higher version without a restart. Invariant: variants, weights, seed, hash version and the analysis
plan (primary metric, guardrails, correction) never change inside a running phase; such a change
opens a new phase, and the analysis reads one phase.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from funnelstream.errors import FieldError
from funnelstream.experiments.errors import DefinitionError, UnknownExperimentError
from funnelstream.experiments.hashing import bucket_ranges

log = logging.getLogger(__name__)

Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
WEIGHT_SUM_TOLERANCE = 1e-3


class Status(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"


class Metric(enum.StrEnum):
    FUNNEL_CONVERSION = "funnel_conversion"
    TASK_DURATION = "task_duration"
    MEAN_SCORE = "mean_score"
    INFERENCE_FAILURES = "inference_failures"


MetricName = Literal[
    "conversion_upload",
    "conversion_tool",
    "conversion_inference",
    "conversion_save",
    "conversion_score",
    "task_duration_s",
    "mean_score",
    "inference_failure_rate",
]
"""The name of one metric result of the analysis."""
Direction = Literal["increase", "decrease"]
MetricRole = Literal["primary", "guardrail", "secondary"]
Correction = Literal["holm", "benjamini_hochberg"]
"""Multiple-testing adjustment of the secondary metrics' p-values."""
METRIC_SOURCE: dict[str, Metric] = {
    "conversion_upload": Metric.FUNNEL_CONVERSION,
    "conversion_tool": Metric.FUNNEL_CONVERSION,
    "conversion_inference": Metric.FUNNEL_CONVERSION,
    "conversion_save": Metric.FUNNEL_CONVERSION,
    "conversion_score": Metric.FUNNEL_CONVERSION,
    "task_duration_s": Metric.TASK_DURATION,
    "mean_score": Metric.MEAN_SCORE,
    "inference_failure_rate": Metric.INFERENCE_FAILURES,
}
"""Which entry of ``metrics`` produces each metric result."""
GOOD_DIRECTION: dict[str, Direction] = {
    "conversion_upload": "increase",
    "conversion_tool": "increase",
    "conversion_inference": "increase",
    "conversion_save": "increase",
    "conversion_score": "increase",
    "task_duration_s": "decrease",
    "mean_score": "increase",
    "inference_failure_rate": "decrease",
}
"""Which way each metric improves: what "chance to beat control" and a guardrail's harm are measured against."""


def default_primary_metric(metrics: list[Any]) -> MetricName:
    """Task time when it is measured (what the experiments here are run for), else saved images."""
    return "task_duration_s" if Metric.TASK_DURATION.value in {str(m) for m in metrics} else "conversion_save"


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    weight: Annotated[float, Field(ge=0, le=1)]
    name: str | None = None


class Guardrail(BaseModel):
    """A metric that must not get worse: harmed when the variant moves it the harmful way by more
    than ``threshold`` (a relative change: 0.02 tolerates 2 %), significantly (docs/design.md,
    "Experiment engine")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: MetricName
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.0
    harmful: Direction | None = None
    """Default: the opposite of the metric's good direction (:data:`GOOD_DIRECTION`)."""

    @property
    def harmful_direction(self) -> Direction:
        if self.harmful is not None:
            return self.harmful
        return "decrease" if GOOD_DIRECTION[self.metric] == "increase" else "increase"


class Cuped(BaseModel):
    """Regression adjustment on each unit's pre-exposure value of the same metric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    lookback_days: Annotated[int, Field(ge=1, le=90)] = 14
    """The pre-period: this many days before each unit's first exposure."""


class Plan(BaseModel):
    """The sample the experiment is planned for: enough units to detect ``mde`` (a relative change
    of the primary metric) with probability ``power``; the report shows progress towards it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mde: Annotated[float, Field(gt=0, lt=10)]
    power: Annotated[float, Field(gt=0.5, lt=1)] = 0.8


class Namespace(BaseModel):
    """A slice of a shared hash space; experiments whose slices are disjoint never share a unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Key
    start: Annotated[float, Field(ge=0, le=1)]
    end: Annotated[float, Field(ge=0, le=1)]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start >= self.end:
            raise ValueError("end: must be greater than start")
        return self

    def as_tuple(self) -> tuple[str, float, float]:
        return (self.name, self.start, self.end)

    def overlaps(self, other: Namespace) -> bool:
        return self.name == other.name and self.start < other.end and other.start < self.end


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    name: str | None = None
    description: str | None = None
    status: Status = Status.DRAFT
    variants: Annotated[list[Variant], Field(min_length=2, max_length=16)]
    """The first variant is the control every other one is compared with."""
    coverage: Annotated[float, Field(ge=0, le=1)] = 1.0
    namespace: Namespace | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    seed: Annotated[str, StringConstraints(max_length=128)] | None = None
    hash_version: Literal[1, 2] = 2
    phase: Annotated[int, Field(ge=1)] = 1
    phase_start: AwareDatetime | None = None
    """When the current phase began; exposures before it belong to an earlier phase."""
    metrics: list[Metric] = Field(default_factory=lambda: list(Metric))
    forced_variants: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], Key] = Field(
        default_factory=dict
    )
    """QA: unit id (anonymous_id or user_id) → variant, bypassing the hash."""
    primary_metric: MetricName
    """The metric the decision is made on; by default :func:`default_primary_metric` of ``metrics``."""
    guardrail_metrics: list[Guardrail] = Field(default_factory=list)
    """Metrics that must not get worse; read unadjusted, like the primary. A bare metric name is a
    guardrail with threshold 0 and the harmful direction opposite to the metric's good one."""
    correction: Correction = "holm"
    """Adjustment of the p-values of every other (secondary) metric, as one family."""
    cuped: Cuped = Field(default_factory=Cuped)
    plan: Plan | None = None

    @field_validator("guardrail_metrics", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"metric": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_primary(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("primary_metric") is None:
            metrics = data.get("metrics")
            listed = metrics if isinstance(metrics, list) else list(Metric)
            data = {**data, "primary_metric": default_primary_metric(listed)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        keys = [variant.key for variant in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("variants: keys must be unique")
        total = sum(variant.weight for variant in self.variants)
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"variants: weights must sum to 1, got {total:g}")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end: must be after start")
        if self.phase > 1 and self.phase_start is None:
            raise ValueError("phase_start: required from phase 2 on")
        for unit, variant in self.forced_variants.items():
            if variant not in keys:
                raise ValueError(f"forced_variants: {unit!r} forced to unknown variant {variant!r}")
        source = METRIC_SOURCE[self.primary_metric]
        if source not in self.metrics:
            raise ValueError(f"primary_metric: {self.primary_metric!r} needs {source.value} in metrics")
        guarded = self.guardrail_names
        for name in guarded:
            if name == self.primary_metric:
                raise ValueError(f"guardrail_metrics: {name!r} is the primary metric")
            if guarded.count(name) > 1:
                raise ValueError(f"guardrail_metrics: {name!r} listed twice")
            if METRIC_SOURCE[name] not in self.metrics:
                raise ValueError(f"guardrail_metrics: {name!r} needs {METRIC_SOURCE[name].value} in metrics")
        return self

    @property
    def hash_seed(self) -> str:
        # GrowthBook's SDKs hash with `seed || key`: an empty seed falls back to the key too.
        return self.seed or self.key

    @property
    def guardrail_names(self) -> list[str]:
        return [guardrail.metric for guardrail in self.guardrail_metrics]

    def guardrail(self, name: str) -> Guardrail | None:
        return next((g for g in self.guardrail_metrics if g.metric == name), None)

    def metric_role(self, name: str) -> MetricRole:
        if name == self.primary_metric:
            return "primary"
        return "guardrail" if name in self.guardrail_names else "secondary"

    @property
    def control(self) -> str:
        return self.variants[0].key

    @property
    def variant_keys(self) -> list[str]:
        return [variant.key for variant in self.variants]

    @property
    def weights(self) -> list[float]:
        return [variant.weight for variant in self.variants]

    @property
    def ranges(self) -> list[tuple[float, float]]:
        return bucket_ranges(len(self.variants), self.coverage, self.weights)

    @property
    def analysis_start(self) -> datetime | None:
        return self.phase_start or self.start

    def is_running(self, now: datetime) -> bool:
        return (
            self.status is Status.RUNNING
            and (self.start is None or self.start <= now)
            and (self.end is None or now < self.end)
        )

    def allocation(self) -> tuple[Any, ...]:
        """What must not change within a phase."""
        return (tuple(self.variant_keys), tuple(self.weights), self.hash_seed, self.hash_version)

    def analysis_plan(self) -> tuple[Any, ...]:
        """What must not change once a phase runs."""
        return (self.primary_metric, tuple(self.guardrail_metrics), self.correction, self.cuped)


class Definitions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, Field(ge=1)]
    experiments: list[Experiment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_and_exclusive(self) -> Self:
        keys = [experiment.key for experiment in self.experiments]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"experiments: duplicate key(s) {', '.join(duplicates)}")
        live = [e for e in self.experiments if e.status is Status.RUNNING and e.namespace is not None]
        for i, first in enumerate(live):
            for second in live[i + 1 :]:
                assert first.namespace is not None and second.namespace is not None
                if first.namespace.overlaps(second.namespace):
                    raise ValueError(
                        f"experiments: {first.key} and {second.key} overlap in namespace {first.namespace.name}"
                    )
        return self

    def get(self, key: str) -> Experiment:
        for experiment in self.experiments:
            if experiment.key == key:
                return experiment
        raise UnknownExperimentError(key, [e.key for e in self.experiments])

    def running(self, now: datetime | None = None) -> list[Experiment]:
        now = now or datetime.now(UTC)
        return [experiment for experiment in self.experiments if experiment.is_running(now)]


def _field_errors(exc: ValidationError, experiments: list[Any]) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        # Name an experiment by its key rather than its position: that is what the author edits.
        if len(loc) >= 2 and loc[0] == "experiments" and isinstance(loc[1], int) and loc[1] < len(experiments):
            entry = experiments[loc[1]]
            if isinstance(entry, dict) and entry.get("key"):
                loc[1] = entry["key"]
        message = err["msg"].removeprefix("Value error, ")
        field = ".".join(str(part) for part in loc) or "file"
        if ":" in message and message.split(":", 1)[0].isidentifier():
            name, message = message.split(":", 1)
            field = f"{field}.{name}" if field != "file" else name
            message = message.strip()
        errors.append(FieldError(field, message))
    return errors


def parse_definitions(text: str, source: str = "<definitions>") -> Definitions:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefinitionError(source, [FieldError("file", f"invalid YAML: {exc}")]) from None
    if not isinstance(raw, dict):
        raise DefinitionError(source, [FieldError("file", "expected a mapping with version and experiments")])
    listed = raw.get("experiments")
    experiments: list[Any] = listed if isinstance(listed, list) else []
    try:
        return Definitions.model_validate(raw)
    except ValidationError as exc:
        raise DefinitionError(source, _field_errors(exc, experiments)) from None


def load_definitions(path: Path) -> Definitions:
    try:
        text = path.read_text()
    except OSError as exc:
        raise DefinitionError(str(path), [FieldError("file", f"cannot read: {exc.strerror}")]) from None
    return parse_definitions(text, str(path))


def check_transition(old: Definitions, new: Definitions, source: str = "<definitions>") -> None:
    """Refuse a new version that would silently move units between arms or rewrite history."""
    errors: list[FieldError] = []
    if new.version <= old.version:
        errors.append(FieldError("version", f"must increase: published {old.version}, got {new.version}"))
    previous = {experiment.key: experiment for experiment in old.experiments}
    for experiment in new.experiments:
        before = previous.get(experiment.key)
        if before is None:
            continue
        where = f"experiments.{experiment.key}"
        if experiment.phase < before.phase:
            errors.append(FieldError(f"{where}.phase", f"cannot go back from {before.phase} to {experiment.phase}"))
        elif experiment.phase == before.phase and experiment.allocation() != before.allocation():
            errors.append(
                FieldError(
                    f"{where}.phase",
                    "variants, weights, seed or hash_version changed; open a new phase (phase + 1, phase_start)",
                )
            )
        elif (
            experiment.phase == before.phase
            and before.status is not Status.DRAFT
            and experiment.analysis_plan() != before.analysis_plan()
        ):
            errors.append(
                FieldError(
                    f"{where}.phase",
                    "primary_metric, guardrail_metrics, correction or cuped changed after the phase started; "
                    "open a new phase (phase + 1, phase_start)",
                )
            )
        elif experiment.phase > before.phase and (
            experiment.phase_start is None or (before.phase_start and experiment.phase_start <= before.phase_start)
        ):
            errors.append(FieldError(f"{where}.phase_start", "a new phase needs a later phase_start"))
    if errors:
        raise DefinitionError(source, errors)


class DefinitionsWatcher:
    """Holds the definitions in force and reloads the file when it changes.

    Each collector instance polls the shared file (a mounted volume or config map); a new version
    is applied only after it validates and passes :func:`check_transition`, otherwise the version
    in force stays and the refusal is kept in ``last_error`` and logged. Reads are lock-free: the
    whole :class:`Definitions` object is swapped at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._current = load_definitions(path)
        self._digest = self._hash(path.read_bytes())
        self.last_error: DefinitionError | None = None

    @staticmethod
    def _hash(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    @property
    def current(self) -> Definitions:
        return self._current

    def poll(self) -> bool:
        """Apply the file if it changed; True when a new version was applied."""
        with self._lock:
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                self.last_error = DefinitionError(str(self.path), [FieldError("file", f"cannot read: {exc.strerror}")])
                log.error("experiment definitions unreadable", extra={"path": str(self.path)})
                return False
            digest = self._hash(data)
            if digest == self._digest:
                return False
            try:
                candidate = parse_definitions(data.decode(), str(self.path))
                check_transition(self._current, candidate, str(self.path))
            except DefinitionError as exc:
                self.last_error = exc
                log.error("experiment definitions refused", extra={"path": str(self.path), "reason": str(exc)})
                return False
            self._current = candidate
            self._digest = digest
            self.last_error = None
            log.info("experiment definitions applied", extra={"version": candidate.version})
            return True

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.is_set():
            await asyncio.to_thread(self.poll)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                continue
