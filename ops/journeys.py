"""The one synthetic generator: seeded editing journeys (exposure, upload, tool, inference, save,
score) of devices and users on their clients, with planted effects, a pre-period and faults as knobs.

:func:`journeys` draws a frame of events; the adapters below only reshape it (collector payloads,
raw Kafka records, enriched rows, warehouse Arrow rows) and add delivery faults. Invariant: the same
spec and seed give the same events and ids; a new knob draws from its own stream, so seeds keep their data.
"""

from __future__ import annotations

import json
import math
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import optimize

from funnelstream.blocks import Block, blocks_by_partition
from funnelstream.clock import correct_event_ts
from funnelstream.contract import FUNNEL_STEP_OF, EnrichedEvent, EventType, SessionSummary, parse_event
from ingest.pipeline import event_bytes

EXPERIMENT_KEY = "segmentation_tool"
TOOLS = {1: ("rectangle", "manual"), 2: ("brush", "manual"), 3: ("segmentation", "ai_assist")}
INFERENCES = {1: ("remove_object", "inpainting"), 2: ("enhance", "super_resolution"), 3: ("deblur", "deblurring")}
UNKNOWN_TOOL_ID = 42
"""A tool id no dimension table knows: what the unknown-dimension paths must flag."""
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
CLIENTS: tuple[tuple[str, str, str, str, float], ...] = (
    ("Chrome", "Windows", "Other", "web", 0.34),
    ("Edge", "Windows", "Other", "web", 0.06),
    ("Chrome", "Mac OS X", "Mac", "web", 0.10),
    ("Safari", "Mac OS X", "Mac", "web", 0.10),
    ("Firefox", "Linux", "Other", "web", 0.05),
    ("Mobile Safari", "iOS", "iPhone", "web", 0.12),
    ("Mobile Safari", "iOS", "iPhone", "ios", 0.08),
    ("Chrome Mobile", "Android", "Generic Smartphone", "web", 0.15),
)
"""(browser, os, device, source, share of devices): each device's client, as the enricher names them."""
DIMENSIONS = ("browser", "os", "device", "source")
PRE_PERIOD_DAYS = 14
"""Pre-period images fall in this many days before their unit's exposure (CUPED's default lookback)."""
_NAMESPACE = uuid.UUID("0b5a3c1e-2f1d-4c55-9a43-5d2f5e0c7a10")
_TYPE = EventType
# Seeded streams beside the funnel's: a new knob draws from its own, so turning it on moves no
# other draw, and a seed without it keeps its data.
_PEOPLE, _DELIVERY, _EXTRA, _ORDER, _RESEND, _CLIENT, _PRE, _FAILURE, _SRM, _PROPENSITY, _TOOL_SAVE, _REQUESTS = range(
    1, 13
)


@dataclass(frozen=True, slots=True)
class JourneySpec:
    """Who edits, how the funnel goes in each arm, and what is planted; every rate is a share."""

    units: int = 2000
    """People; each is one device, plus a second one for some logged-in people."""
    experiment_key: str = EXPERIMENT_KEY
    control: str = "control"
    treatment: str = "treatment"
    treatment_weight: float = 0.5
    id_prefix: str | None = None
    """Devices are ``{prefix}u{n}``, images ``{prefix}i{n}``; default ``s{seed}-``. Event ids derive
    from these names: runs that must not share ids need prefixes of their own."""
    start: datetime = datetime(2026, 11, 2, tzinfo=UTC)
    exposure_window_s: float = 3 * 86_400
    """Units are first exposed uniformly over this long after ``start``."""
    login_rate: float = 0.0
    second_device_rate: float = 0.0
    """Share of logged-in people who also come on a second device, in the same arm."""
    images_per_unit_extra: float = 1.0
    """Each device edits 1 + Poisson(this) images."""
    image_gap_s: float = 900.0
    """Mean time between a device's images (exponential)."""
    tool_rate: float = 0.9
    inference_rate: float = 0.9
    control_save_conversion: float = 0.40
    """Share of control units that save at least one image after exposure."""
    save_conversion_lift: float = 0.0
    """Absolute points added to that share in the treatment arm."""
    image_save_rate: float | None = None
    """Instead of the two above: each arm's save rate per image given an inference (control's)."""
    image_save_lift: float = 0.0
    """With ``image_save_rate``: absolute points added to it in the treatment arm."""
    task_time_factor: float = 1.0
    """Treatment task time (first tool click → save) per image = control's times this factor."""
    median_task_s: float = 60.0
    task_sigma: float = 0.6
    unit_speed_sigma: float = 0.3
    score_rate: float = 0.5
    contaminated_share: float = 0.0
    """Units also exposed to the other arm, as a second device after login would be."""
    pre_exposure_share: float = 0.2
    """Control units with an upload-tool-save before their exposure, which must not count."""
    completions: bool = False
    """Each inference request gets its ``inference_completed``; the save waits for it."""
    proposals: bool = False
    """Treatment tool clicks get the ``segments_proposed`` of the segmentation model."""
    control_tools: tuple[int, ...] = (1, 2)
    treatment_tools: tuple[int, ...] = (3,)
    unknown_tool_share: float = 0.0
    inference_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)
    model_name: str = "lama"
    model_versions: tuple[str, ...] = ("1",)
    reentry_share: float = 0.0
    """Images whose tool → inference → save is done again, once or twice more."""
    missing_upload_share: float = 0.0
    """Images whose upload event never arrives."""
    missing_tool_share: float = 0.0
    """Tool clicks that never arrive: an inference without its tool step."""
    late_save_share: float = 0.0
    """Saves an hour to two and a half after their inference: outside a one-hour funnel window."""
    pre_period_images: float = 0.0
    """Each device also edits Poisson(this) images in the :data:`PRE_PERIOD_DAYS` before its exposure,
    at its own speed and save propensity and with no planted effect (CUPED's covariate)."""
    save_propensity_sigma: float = 0.0
    """Spread of each device's save rate per image around its arm's (normal on the log-odds): with
    it a device's pre-period saves predict its later ones. Its arm's rate is the median device's."""
    failure_rate: float = 0.0
    """Share of control's ``inference_completed`` with status 'failed' (needs ``completions``);
    a failure changes nothing else in the journey, so it moves one metric only."""
    failure_rate_lift: float = 0.0
    """Absolute points added to ``failure_rate`` in the treatment arm."""
    srm_in: tuple[str, str, float] | None = None
    """(dimension, value, share): that share of treatment devices with that client value (a
    :data:`DIMENSIONS` name) lose their exposure, as a broken client would; their events stay."""
    tool_save_factors: tuple[tuple[int, float], ...] = ()
    """(tool id, factor ≤ 1) pairs: images edited with that tool are saved (and scored) at that
    factor times their arm's rate, e.g. ``((2, 0.5),)`` plants brush users who save half as often."""

    def __post_init__(self) -> None:
        if (self.failure_rate or self.failure_rate_lift) and not self.completions:
            raise ValueError("inference failures need completions=True")
        if self.srm_in is not None and self.srm_in[0] not in DIMENSIONS:
            raise ValueError(f"srm_in: dimension must be one of {DIMENSIONS}, not {self.srm_in[0]!r}")
        if any(not 0.0 <= factor <= 1.0 for _, factor in self.tool_save_factors):
            raise ValueError("tool_save_factors: each factor must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class Truth:
    save_conversion_control: float
    save_conversion_treatment: float
    task_time_relative_lift: float

    @property
    def save_conversion_difference(self) -> float:
        return self.save_conversion_treatment - self.save_conversion_control


def _image_save_probability(unit_conversion: float, extra: float) -> float:
    """Per-image save probability q giving P(unit saves ≥ 1) = unit_conversion with 1 + Poisson images.

    P(no save) = E[(1 - q)^K] = (1 - q)·exp(-extra·q) for K = 1 + Poisson(extra).
    """
    return float(optimize.brentq(lambda q: 1 - (1 - q) * math.exp(-extra * q) - unit_conversion, 0.0, 1.0))


def save_rates(spec: JourneySpec) -> tuple[float, float]:
    """Each arm's save probability per image given an inference (control, treatment)."""
    if spec.image_save_rate is not None:
        return spec.image_save_rate, spec.image_save_rate + spec.image_save_lift
    reach = spec.tool_rate * spec.inference_rate
    extra = spec.images_per_unit_extra
    control = _image_save_probability(spec.control_save_conversion, extra) / reach
    treated = _image_save_probability(spec.control_save_conversion + spec.save_conversion_lift, extra) / reach
    if max(control, treated) > 1:
        raise ValueError("save conversion too high for the tool and inference rates")
    return control, treated


def truth(spec: JourneySpec) -> Truth:
    return Truth(
        save_conversion_control=spec.control_save_conversion,
        save_conversion_treatment=spec.control_save_conversion + spec.save_conversion_lift,
        task_time_relative_lift=spec.task_time_factor - 1.0,
    )


def _prefix(spec: JourneySpec, seed: int) -> str:
    return spec.id_prefix if spec.id_prefix is not None else f"s{seed}-"


def _people(spec: JourneySpec, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each device's person, its id and its user id (None unless the person logs in)."""
    extra = np.random.default_rng([seed, _PEOPLE])
    logged = extra.random(spec.units) < spec.login_rate
    second = logged & (extra.random(spec.units) < spec.second_device_rate)
    prefix = _prefix(spec, seed)
    person = np.concatenate([np.arange(spec.units), np.flatnonzero(second)])
    unit_ids = np.char.add(f"{prefix}u", person.astype(str))
    unit_ids[spec.units :] = np.char.add(unit_ids[spec.units :], "-1")
    user_ids = np.char.add(f"{prefix}user", person.astype(str)).astype(object)
    user_ids[~logged[person]] = None
    return person, unit_ids, user_ids


def devices(spec: JourneySpec, seed: int) -> list[tuple[str, str | None]]:
    """``(anonymous_id, user_id)`` of every device :func:`journeys` draws, in its order."""
    _, unit_ids, user_ids = _people(spec, seed)
    return [(str(unit), user) for unit, user in zip(unit_ids, user_ids, strict=True)]


def journeys(
    spec: JourneySpec,
    seed: int,
    assigned: Mapping[str, str] | None = None,
    assign: Callable[[str, str | None], str] | None = None,
) -> pd.DataFrame:
    """The events of ``spec``'s devices, one row each, in no particular order.

    Columns: event_type, anonymous_id, user_id, input_id, event_ts, experiment_key, variant (on
    exposures), score, funnel_step, job_id, tool_id, inference_id, latency_ms, model_version, status
    (on inference_completed), and the device's client: browser, os, device, source.
    Arms are a coin flip of ``treatment_weight``, unless ``assigned`` (unit id → arm, which then also
    names the units, as the collector's ``/v1/assignments`` would) or ``assign(anonymous_id,
    user_id)`` decides them. A user's second device takes the first one's arm.
    """
    rng = np.random.default_rng(seed)
    # Everything beyond the experiment's funnel draws from a second stream, so a richer journey
    # never moves an experiment's draws (the analysis tests' seeds keep their data).
    extra = np.random.default_rng([seed, _EXTRA])
    prefix = _prefix(spec, seed)
    if assigned is not None:
        unit_ids = np.array(list(assigned), dtype=str)
        user_ids = np.full(len(unit_ids), None, dtype=object)
        treated = np.array([assigned[unit] == spec.treatment for unit in unit_ids], dtype=bool)
        rng.random(len(unit_ids))  # keep the draws that follow identical to a simulated assignment
    else:
        person, unit_ids, user_ids = _people(spec, seed)
        treated = rng.random(len(unit_ids)) < spec.treatment_weight
        treated[spec.units :] = treated[person[spec.units :]]
    n = len(unit_ids)
    if assign is not None:
        arms = [assign(str(unit), user) for unit, user in zip(unit_ids, user_ids, strict=True)]
        treated = np.array([arm == spec.treatment for arm in arms], dtype=bool)
    variant = np.where(treated, spec.treatment, spec.control)
    exposure_s = rng.uniform(0, spec.exposure_window_s, n)
    q_control, q_treat = save_rates(spec)
    client = np.random.default_rng([seed, _CLIENT]).choice(len(CLIENTS), n, p=[c[4] for c in CLIENTS])
    save_odds = _save_odds(spec, seed, n)

    images = 1 + rng.poisson(spec.images_per_unit_extra, n)
    owner = np.repeat(np.arange(n), images)
    m = len(owner)
    gaps = rng.exponential(spec.image_gap_s, m)
    cumulative = np.cumsum(gaps)
    group_start = np.repeat(cumulative[np.cumsum(images) - images] - gaps[np.cumsum(images) - images], images)
    upload_s = exposure_s[owner] + 30.0 + (cumulative - group_start)
    tool = rng.random(m) < spec.tool_rate
    inference = tool & (rng.random(m) < spec.inference_rate)
    per_image_odds = None if save_odds is None else save_odds[owner]
    save = inference & (rng.random(m) < _unit_rate(np.where(treated[owner], q_treat, q_control), per_image_odds))
    scored = save & (rng.random(m) < spec.score_rate)
    speed = rng.lognormal(0.0, spec.unit_speed_sigma, n)
    duration = (
        speed[owner]
        * rng.lognormal(math.log(spec.median_task_s), spec.task_sigma, m)
        * np.where(treated[owner], spec.task_time_factor, 1.0)
    )
    score = np.clip(np.round(rng.normal(np.where(treated[owner], 3.8, 3.6), 1.0)), 1, 5)
    tool_s = upload_s + 10.0
    inference_s = tool_s + duration / 2
    save_s = tool_s + duration

    image_ids = np.char.add(f"{prefix}i", np.arange(m).astype(str))
    job_ids = np.char.add(image_ids, "-j0")
    latency = extra.uniform(300.0, 5000.0, m)
    if spec.completions:
        save_s = np.maximum(save_s, inference_s + latency / 1000 + 0.5)
    if spec.late_save_share:
        save_s = save_s + np.where(extra.random(m) < spec.late_save_share, extra.uniform(3700, 9000, m), 0.0)
    tool_ids = _tools(spec, extra, treated[owner])
    if spec.tool_save_factors:
        kept = _tool_save_kept(spec, seed, tool_ids)
        save, scored = save & kept, scored & kept
    inference_ids = extra.choice([1, 2, 3], size=m, p=list(spec.inference_weights))
    versions = np.array(spec.model_versions)[extra.integers(0, len(spec.model_versions), m)]
    failure = np.where(treated[owner], spec.failure_rate + spec.failure_rate_lift, spec.failure_rate)
    frame = _Frame(unit_ids, user_ids, owner, image_ids, client, failure, np.random.default_rng([seed, _FAILURE]))
    exposed = np.flatnonzero(~_lost_exposures(spec, seed, client, treated))
    frame.add(exposed, exposure_s, _TYPE.EXPERIMENT_EXPOSURE, unit_rows=True, variant=variant)
    uploaded = ~(extra.random(m) < spec.missing_upload_share)
    frame.add(uploaded, upload_s, _TYPE.IMAGE_UPLOADED)
    clicked = tool & ~(extra.random(m) < spec.missing_tool_share)
    frame.add(clicked, tool_s, _TYPE.TOOL_SELECTED, tool_id=tool_ids)
    frame.add(inference, inference_s, _TYPE.INFERENCE_REQUESTED, job_id=job_ids, inference_id=inference_ids)
    frame.add(save, save_s, _TYPE.IMAGE_SAVED, job_id=job_ids)
    frame.add(scored, save_s + 5.0, _TYPE.SCORE_SUBMITTED, job_id=job_ids, score=score)

    if spec.contaminated_share > 0:
        dirty = np.flatnonzero(rng.random(n) < spec.contaminated_share)
        other = np.where(treated, spec.control, spec.treatment)
        frame.add(dirty, exposure_s + 3600.0, _TYPE.EXPERIMENT_EXPOSURE, unit_rows=True, variant=other)
    if spec.pre_exposure_share > 0:
        # Activity before exposure, in control only: counted by mistake it would bias every metric.
        early = np.flatnonzero(~treated & (rng.random(n) < spec.pre_exposure_share))
        early_ids = np.char.add(f"{prefix}pre", np.arange(len(early)).astype(str))
        for offset, kind in (
            (0.0, _TYPE.IMAGE_UPLOADED),
            (10.0, _TYPE.TOOL_SELECTED),
            (20.0, _TYPE.INFERENCE_REQUESTED),
            (25.0, _TYPE.IMAGE_SAVED),
        ):
            frame.add(early, exposure_s - 4000.0 + offset, kind, unit_rows=True, input_id=early_ids)

    if spec.completions:
        frame.completions(inference, inference_s, job_ids, inference_ids, latency, versions)
    if spec.pre_period_images:
        _pre_period(spec, seed, frame, exposure_s, speed, _unit_rate(q_control, save_odds))
    if spec.proposals:
        frame.add(tool & treated[owner], tool_s + 1.5, _TYPE.SEGMENTS_PROPOSED, job_id=np.char.add(image_ids, "-seg"))
    if spec.reentry_share:
        _reentries(spec, extra, frame, treated[owner], save_s, q_control, q_treat, latency, inference_ids, versions)
    return frame.build(spec)


def simulate(spec: JourneySpec, seed: int, assigned: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, Truth]:
    """An experiment's events (:func:`journeys`) and the truth they were drawn from."""
    return journeys(spec, seed, assigned), truth(spec)


def _save_odds(spec: JourneySpec, seed: int, n: int) -> np.ndarray | None:
    """Each device's shift of its save rate on the log-odds scale; None without a spread."""
    if not spec.save_propensity_sigma:
        return None
    return np.random.default_rng([seed, _PROPENSITY]).normal(0.0, spec.save_propensity_sigma, n)


def _unit_rate(rate: float | np.ndarray, odds: np.ndarray | None) -> float | np.ndarray:
    """``rate`` moved by each row's log-odds shift (unchanged without one)."""
    if odds is None:
        return rate
    logit = np.log(rate) - np.log1p(-np.minimum(rate, 1 - 1e-12))
    moved: np.ndarray = 1.0 / (1.0 + np.exp(-(logit + odds)))
    return moved


def _tool_save_kept(spec: JourneySpec, seed: int, tool_ids: np.ndarray) -> np.ndarray:
    """Per image, whether its save survives its tool's factor (always, for a tool without one)."""
    factor = np.ones(len(tool_ids))
    for tool_id, tool_factor in spec.tool_save_factors:
        factor[tool_ids == tool_id] = tool_factor
    kept: np.ndarray = np.random.default_rng([seed, _TOOL_SAVE]).random(len(tool_ids)) < factor
    return kept


def _lost_exposures(spec: JourneySpec, seed: int, client: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """Devices whose exposure never arrives: ``srm_in``'s share of treatment devices on that client."""
    if spec.srm_in is None:
        return np.zeros(len(client), dtype=bool)
    dimension, value, share = spec.srm_in
    values = np.array([c[DIMENSIONS.index(dimension)] for c in CLIENTS])[client]
    draw = np.random.default_rng([seed, _SRM]).random(len(client))
    return np.asarray(treated & (values == value) & (draw < share), dtype=bool)


def _pre_period(
    spec: JourneySpec, seed: int, frame: _Frame, exposure_s: np.ndarray, speed: np.ndarray, save_rate: Any
) -> None:
    """Poisson(``pre_period_images``) images per device, each saved (if at all) in the
    :data:`PRE_PERIOD_DAYS` before its exposure: the device's speed and save rate, control's funnel."""
    pre = np.random.default_rng([seed, _PRE])
    n = len(exposure_s)
    images = pre.poisson(spec.pre_period_images, n)
    owner = np.repeat(np.arange(n), images)
    m = len(owner)
    # Anchored on the save, at least five minutes before exposure: nothing of it reaches the post period.
    end_s = exposure_s[owner] - pre.uniform(300.0, (PRE_PERIOD_DAYS - 1) * 86_400.0, m)
    duration = speed[owner] * pre.lognormal(math.log(spec.median_task_s), spec.task_sigma, m)
    tool = pre.random(m) < spec.tool_rate
    inference = tool & (pre.random(m) < spec.inference_rate)
    rate = save_rate[owner] if isinstance(save_rate, np.ndarray) else save_rate
    save = inference & (pre.random(m) < rate)
    scored = save & (pre.random(m) < spec.score_rate)
    score = np.clip(np.round(pre.normal(3.6, 1.0, m)), 1, 5)
    latency = pre.uniform(300.0, 5000.0, m)
    failed = pre.random(m) < spec.failure_rate
    tool_ids = np.array(spec.control_tools)[pre.integers(0, len(spec.control_tools), m)]
    inference_ids = pre.choice([1, 2, 3], size=m, p=list(spec.inference_weights))
    versions = np.array(spec.model_versions)[pre.integers(0, len(spec.model_versions), m)]
    tool_s = end_s - duration
    inference_s = tool_s + duration / 2
    save_s = np.maximum(end_s, inference_s + latency / 1000 + 0.5) if spec.completions else end_s
    ids = np.char.add(f"{_prefix(spec, seed)}b", np.arange(m).astype(str))
    jobs = np.char.add(ids, "-j0")
    steps: list[tuple[np.ndarray, np.ndarray, EventType, dict[str, np.ndarray]]] = [
        (np.ones(m, dtype=bool), tool_s - 10.0, _TYPE.IMAGE_UPLOADED, {}),
        (tool, tool_s, _TYPE.TOOL_SELECTED, {"tool_id": tool_ids}),
        (inference, inference_s, _TYPE.INFERENCE_REQUESTED, {"job_id": jobs, "inference_id": inference_ids}),
        (save, save_s, _TYPE.IMAGE_SAVED, {"job_id": jobs}),
        (scored, save_s + 5.0, _TYPE.SCORE_SUBMITTED, {"job_id": jobs, "score": score}),
    ]
    if spec.completions:
        done = _completed(jobs, inference_ids, latency, versions, failed)
        steps.append((inference, inference_s + latency / 1000, _TYPE.INFERENCE_COMPLETED, done))
    for rows, at, kind, columns in steps:
        frame.append(owner[rows], at[rows], kind, ids[rows], **{k: v[rows] for k, v in columns.items()})


def _tools(spec: JourneySpec, extra: np.random.Generator, treated: np.ndarray) -> np.ndarray:
    m = len(treated)
    ids = np.where(
        treated,
        np.array(spec.treatment_tools)[extra.integers(0, len(spec.treatment_tools), m)],
        np.array(spec.control_tools)[extra.integers(0, len(spec.control_tools), m)],
    )
    return np.where(extra.random(m) < spec.unknown_tool_share, UNKNOWN_TOOL_ID, ids)


def _reentries(
    spec: JourneySpec,
    extra: np.random.Generator,
    frame: _Frame,
    treated: np.ndarray,
    after_s: np.ndarray,
    q_control: float,
    q_treat: float,
    latency: np.ndarray,
    inference_ids: np.ndarray,
    versions: np.ndarray,
) -> None:
    """One or two more tool → inference → save rounds on a share of the images, after the first."""
    m = len(treated)
    rounds = np.where(extra.random(m) < spec.reentry_share, extra.integers(1, 3, m), 0)
    clock = after_s.copy()
    for attempt in (1, 2):
        doing = rounds >= attempt
        clock = clock + extra.exponential(40.0, m) + 0.5
        tool_ids = _tools(spec, extra, treated)
        frame.add(doing & ~(extra.random(m) < spec.missing_tool_share), clock, _TYPE.TOOL_SELECTED, tool_id=tool_ids)
        inferring = doing & (extra.random(m) < spec.inference_rate)
        clock = clock + extra.exponential(60.0, m) + 0.5
        jobs = np.char.add(frame.image_ids, f"-j{attempt}")
        frame.add(inferring, clock, _TYPE.INFERENCE_REQUESTED, job_id=jobs, inference_id=inference_ids)
        if spec.completions:
            frame.completions(inferring, clock, jobs, inference_ids, latency, versions)
        clock = clock + latency / 1000 + extra.exponential(30.0, m) + 0.5
        saving = inferring & (extra.random(m) < np.where(treated, q_treat, q_control))
        frame.add(saving, clock, _TYPE.IMAGE_SAVED, job_id=jobs)
        score = extra.integers(1, 6, m).astype(float)
        frame.add(
            saving & (extra.random(m) < spec.score_rate), clock + 5.0, _TYPE.SCORE_SUBMITTED, job_id=jobs, score=score
        )


@dataclass
class _Frame:
    """Columns of events gathered per kind, then made one frame."""

    unit_ids: np.ndarray
    user_ids: np.ndarray
    owner: np.ndarray
    image_ids: np.ndarray
    client: np.ndarray
    """Each device's row of :data:`CLIENTS`."""
    failure: np.ndarray
    """Each image's probability that an inference result fails."""
    failures: np.random.Generator
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)

    def add(
        self, rows: np.ndarray, ts: np.ndarray, kind: EventType, *, unit_rows: bool = False, **columns: np.ndarray
    ) -> None:
        """Events of ``kind`` for ``rows`` (a mask or indices of images, or of units if ``unit_rows``);
        an ``input_id`` column is taken as it is, every other column indexed like ``rows``."""
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        units = index if unit_rows else self.owner[index]
        input_ids = columns.pop("input_id", None if unit_rows else self.image_ids[index])
        self.append(units, ts[index], kind, input_ids, **{name: values[index] for name, values in columns.items()})

    def append(
        self, units: np.ndarray, ts: np.ndarray, kind: EventType, input_ids: np.ndarray | None, **columns: np.ndarray
    ) -> None:
        """Events of ``kind`` of the devices ``units``, one per entry, every column given per event."""
        part: dict[str, np.ndarray] = {
            "unit": units,
            "anonymous_id": self.unit_ids[units],
            "user_id": self.user_ids[units],
            "ts": ts,
            "type": np.full(len(units), kind.value),
            "input_id": np.full(len(units), None) if input_ids is None else input_ids,
        }
        self.parts.append(part | columns)

    def completions(
        self,
        rows: np.ndarray,
        requested_s: np.ndarray,
        jobs: np.ndarray,
        inference_ids: np.ndarray,
        latency_ms: np.ndarray,
        versions: np.ndarray,
    ) -> None:
        """The ``inference_completed`` of requests made at ``requested_s``, ``latency_ms`` later."""
        failed = self.failures.random(len(self.failure)) < self.failure
        index = np.flatnonzero(rows)
        columns = _completed(jobs, inference_ids, latency_ms, versions, failed)
        at = requested_s + latency_ms / 1000
        self.append(
            self.owner[index],
            at[index],
            _TYPE.INFERENCE_COMPLETED,
            self.image_ids[index],
            **{name: values[index] for name, values in columns.items()},
        )

    def build(self, spec: JourneySpec) -> pd.DataFrame:
        total = sum(len(part["ts"]) for part in self.parts)
        defaults = {"variant": None, "score": np.nan, "job_id": None, "tool_id": np.nan, "inference_id": np.nan}
        defaults |= {"latency_ms": np.nan, "model_version": None, "status": None}
        columns: dict[str, np.ndarray] = {}
        for name in ("unit", "anonymous_id", "user_id", "ts", "type", "input_id", *defaults):
            pieces = [
                part[name] if name in part else np.full(len(part["ts"]), defaults[name], dtype=object)
                for part in self.parts
            ]
            columns[name] = np.concatenate(pieces) if pieces else np.empty(total, dtype=object)
        kind = pd.Series(columns["type"])
        exposure = kind.eq(_TYPE.EXPERIMENT_EXPOSURE.value)
        client = self.client[columns["unit"].astype(int)]
        return pd.DataFrame(
            {
                "event_type": kind,
                "anonymous_id": columns["anonymous_id"],
                "user_id": columns["user_id"],
                "input_id": columns["input_id"],
                "event_ts": pd.Timestamp(spec.start) + pd.to_timedelta(columns["ts"].astype(float), unit="s"),
                "experiment_key": exposure.map({True: spec.experiment_key, False: None}),
                "variant": columns["variant"],
                "score": columns["score"].astype(float),
                "funnel_step": kind.map({k.value: int(v) for k, v in FUNNEL_STEP_OF.items()}).fillna(0).astype(int),
                "job_id": columns["job_id"],
                "tool_id": columns["tool_id"].astype(float),
                "inference_id": columns["inference_id"].astype(float),
                "latency_ms": columns["latency_ms"].astype(float),
                "model_version": columns["model_version"],
                "status": columns["status"],
            }
            | {name: _client_column(i, client) for i, name in enumerate(DIMENSIONS)}
        )


def _client_column(dimension: int, client: np.ndarray) -> pd.Categorical:
    """One dimension of :data:`CLIENTS` per row, as codes: cheap at millions of rows."""
    values = [c[dimension] for c in CLIENTS]
    categories = list(dict.fromkeys(values))
    return pd.Categorical.from_codes(np.array([categories.index(v) for v in values])[client], categories=categories)


def _completed(
    jobs: np.ndarray, inference_ids: np.ndarray, latency_ms: np.ndarray, versions: np.ndarray, failed: np.ndarray
) -> dict[str, np.ndarray]:
    """The columns of ``inference_completed`` events."""
    return {
        "job_id": jobs,
        "inference_id": inference_ids,
        "latency_ms": np.round(latency_ms, 1),
        "model_version": versions,
        "status": np.where(failed, "failed", "succeeded").astype(object),
    }


# --- collector payloads ------------------------------------------------------------------------


def _uuid5(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def _arms(events: pd.DataFrame) -> dict[str, str]:
    """Each unit's arm: the variant of its first exposure."""
    exposed = events.dropna(subset=["variant"]).sort_values("event_ts", kind="stable")
    first = exposed.drop_duplicates("anonymous_id")
    return dict(zip(first["anonymous_id"], first["variant"], strict=True))


def collector_payloads(
    events: pd.DataFrame,
    *,
    exposures: bool = True,
    sent_at: datetime | None = None,
    library: str = "funnelstream-simulator",
) -> list[dict[str, Any]]:
    """The frame's events as a tracker POSTs them to ``/v1/batch`` (contract JSON), in time order.

    Every event carries its unit's arm; ``exposures=False`` leaves exposure events out (the
    collector logs them at assignment). Ids derive from the frame's, so a resend is a resend.
    """
    experiment_key = str(events["experiment_key"].dropna().iloc[0]) if events["experiment_key"].notna().any() else ""
    arms = _arms(events)
    ordered = events.sort_values("event_ts", kind="stable")
    sent = sent_at.isoformat() if sent_at is not None else None
    out: list[dict[str, Any]] = []
    for index, row in zip(ordered.index, ordered.itertuples(index=False), strict=True):
        kind = row.event_type
        if kind == _TYPE.EXPERIMENT_EXPOSURE.value and not exposures:
            continue
        event: dict[str, Any] = {
            "event_id": _uuid5(f"{row.anonymous_id}:{row.input_id}:{kind}:{index}"),
            "event_type": kind,
            "anonymous_id": row.anonymous_id,
            "client_ts": row.event_ts.isoformat(timespec="milliseconds"),
            "experiments": {experiment_key: arms[row.anonymous_id]} if row.anonymous_id in arms else {},
            "context": {"library_name": library, "library_version": "1"},
        }
        if sent is not None:
            event["sent_at"] = sent
        if isinstance(row.user_id, str):
            event["user_id"] = row.user_id
        if isinstance(row.input_id, str):
            event["input_id"] = _uuid5(str(row.input_id))
        event |= _fields(row)
        out.append(event)
    return out


def _fields(row: Any) -> dict[str, Any]:
    kind = row.event_type
    job = _uuid5(f"job:{row.job_id}") if isinstance(row.job_id, str) else None
    day = f"{row.event_ts:%Y/%m/%d}"
    if kind == _TYPE.EXPERIMENT_EXPOSURE.value:
        return {"experiment_key": row.experiment_key, "variant": row.variant}
    if kind == _TYPE.IMAGE_UPLOADED.value:
        image = _uuid5(str(row.input_id))
        return {
            "input_url": f"inputs/{day}/{image}.png",
            "width": 1024,
            "height": 768,
            "size_bytes": 200_000,
            "content_type": "image/png",
        }
    if kind == _TYPE.TOOL_SELECTED.value:
        return {"tool_id": int(row.tool_id) if row.tool_id == row.tool_id else 3}
    if kind == _TYPE.SEGMENTS_PROPOSED.value:
        return {"job_id": job, "proposal_count": 12, "latency_ms": 900.0}
    inference = int(row.inference_id) if row.inference_id == row.inference_id else 1
    if kind == _TYPE.INFERENCE_REQUESTED.value:
        return {"inference_id": inference, "job_id": job or _uuid5(f"job:{row.input_id}")}
    if kind == _TYPE.INFERENCE_COMPLETED.value:
        done = {"inference_id": inference, "job_id": job, "latency_ms": float(row.latency_ms), "model_name": "lama"}
        done["model_version"] = row.model_version
        if getattr(row, "status", None) == "failed":
            return done | {"status": "failed", "error": "model error"}
        return done | {
            "status": "succeeded",
            "inference_url": f"results/{day}/{job}.png",
            "mask_url": f"masks/{day}/{job}.png",
        }
    if kind == _TYPE.IMAGE_SAVED.value:
        return {"job_id": job or _uuid5(f"job:{row.input_id}")}
    if kind == _TYPE.SCORE_SUBMITTED.value:
        return {"job_id": job or _uuid5(f"job:{row.input_id}"), "score": int(row.score)}
    return {}


# --- delivery faults ---------------------------------------------------------------------------


def arrival_order(
    ts_s: np.ndarray,
    rng: np.random.Generator,
    *,
    duplicate_share: float = 0.0,
    shuffle_share: float = 0.0,
    within_s: float = 300.0,
) -> np.ndarray:
    """Indices of events in the order they arrive: in time order, except ``shuffle_share`` of them
    up to ``within_s`` late, and ``duplicate_share`` resent (same index again) up to ``within_s`` later."""
    n = len(ts_s)
    arrival = ts_s + np.where(rng.random(n) < shuffle_share, rng.uniform(0, within_s, n), 0.0)
    resent = np.flatnonzero(rng.random(n) < duplicate_share)
    again = arrival[resent] + rng.uniform(0, within_s, len(resent))
    index = np.concatenate([np.arange(n), resent])
    return index[np.argsort(np.concatenate([arrival, again]), kind="stable")]


def enrich(raw: dict[str, Any], *, session_id: str, received_at: datetime, source: str = "web") -> EnrichedEvent:
    """One client event as the stream processors write it; ``raw`` must carry sent_at."""
    event = parse_event(raw)
    corrected = correct_event_ts(client_ts=event.client_ts, sent_at=event.sent_at, received_at=received_at)
    fields = event.model_dump(exclude={"context", "received_at", "event_ts", "timestamp_flag", "source"})
    fields.pop("emitted_by", None)
    row: dict[str, Any] = {
        **{k: v for k, v in fields.items() if k in EnrichedEvent.model_fields},
        "session_id": session_id,
        "received_at": received_at,
        "event_ts": corrected.event_ts,
        "timestamp_flag": corrected.flag,
        "source": source,
        "funnel_step": int(FUNNEL_STEP_OF.get(EventType(raw["event_type"]), 0)),
        "library_name": event.context.library_name,
        "library_version": event.context.library_version,
        "enriched_at": received_at + timedelta(milliseconds=50),
    }
    for id_field, table, names in (("tool_id", TOOLS, ("tool_name", "tool_type")),
                                   ("inference_id", INFERENCES, ("inference_name", "inference_type"))):  # fmt: skip
        if (dimension := row.get(id_field)) is not None:
            if dimension in table:
                row[names[0]], row[names[1]] = table[dimension]
            else:
                row["unknown_dimension"] = True
    return EnrichedEvent.model_validate(row)


def enriched(
    payloads: Iterable[dict[str, Any]],
    seed: int,
    *,
    skew_sigma_s: float = 0.0,
    late_share: float = 0.0,
    sources: tuple[str, ...] = ("web",),
) -> list[EnrichedEvent]:
    """Collector payloads (in time order) as the warehouse receives them: each device's clock off by
    Normal(0, ``skew_sigma_s``) (whole milliseconds), sent 0.05–2 s after the fact and received 20–300 ms later, one
    session per device, ``late_share`` flagged late."""
    rng = np.random.default_rng([seed, _DELIVERY])
    skews: dict[str, timedelta] = {}
    sessions: dict[str, str] = {}
    out = []
    for raw in payloads:
        device = raw["anonymous_id"]
        happened = datetime.fromisoformat(raw["client_ts"])
        if device not in skews:
            skews[device] = timedelta(
                milliseconds=round(float(rng.normal(0, skew_sigma_s)) * 1000 if skew_sigma_s else 0)
            )
            sessions[device] = f"{device}:{int(happened.timestamp() * 1000)}"
        # Whole milliseconds, as the warehouse keeps them: event_ts = received - (sent - client).
        sent = happened + timedelta(milliseconds=int(rng.integers(50, 2000)))
        received = sent + timedelta(milliseconds=int(rng.integers(20, 300)))
        skew = skews[device]
        on_device = {**raw, "client_ts": (happened + skew).isoformat(), "sent_at": (sent + skew).isoformat()}
        source = sources[int(rng.integers(0, len(sources)))]
        event = enrich(on_device, session_id=sessions[device], received_at=received, source=source)
        if late_share and rng.random() < late_share:
            event = event.model_copy(update={"is_late": True})
        out.append(event)
    return out


def session_of(events: list[EnrichedEvent], *, session_id: str | None = None) -> SessionSummary:
    """The closed session summary of one session's events (in time order)."""
    first, last = events[0], events[-1]
    return SessionSummary(
        session_id=session_id or first.session_id,
        anonymous_id=first.anonymous_id,
        user_id=first.user_id,
        started_at=first.event_ts,
        last_event_at=last.event_ts,
        duration_s=(last.event_ts - first.event_ts).total_seconds(),
        event_count=len(events),
        input_ids=sorted({e.input_id for e in events if e.input_id}, key=str),
        deepest_step=max(e.funnel_step for e in events),
        experiments=first.experiments,
        closed=True,
        version=len(events),
        updated_at=last.enriched_at,
    )


def sessions_of(events: Iterable[EnrichedEvent]) -> list[SessionSummary]:
    by_session: dict[str, list[EnrichedEvent]] = {}
    for event in events:
        by_session.setdefault(event.session_id, []).append(event)
    return [session_of(sorted(group, key=lambda e: e.event_ts)) for group in by_session.values()]


# --- presets: one spec each for the places that need a particular stream --------------------------


PLANTED_TASK_TIME_FACTOR = 0.7
"""The demo's treatment task time, as a multiple of control's."""
PLANTED_SAVE_LIFT = 0.05
"""The demo's treatment save rate per inference, in points above control's."""


def live_spec(users: int, seed: int, *, end: datetime, window: timedelta, effects: bool = True) -> JourneySpec:
    """Visits of ``users`` people over ``window`` before ``end`` (the last hour left for them to
    finish), as the demo, the load run and the QA fixtures send them: logins, second devices,
    inference results, segment proposals. ``effects`` plants the demo's truth in the treatment arm
    (the Segmentation Tool): a 30% shorter task time and a 5 points higher save rate per inference."""
    return JourneySpec(
        units=users,
        id_prefix=f"anon-{seed}-",
        start=end - window,
        exposure_window_s=max(window.total_seconds() - 3600, 60.0),
        login_rate=0.3,
        second_device_rate=0.1,
        images_per_unit_extra=0.4,
        image_gap_s=20.0,
        tool_rate=0.85,
        inference_rate=0.75,
        image_save_rate=0.5,
        image_save_lift=PLANTED_SAVE_LIFT if effects else 0.0,
        task_time_factor=PLANTED_TASK_TIME_FACTOR if effects else 1.0,
        median_task_s=120.0,
        unit_speed_sigma=0.0,
        score_rate=0.6,
        pre_exposure_share=0.0,
        completions=True,
        proposals=True,
    )


@dataclass(frozen=True, slots=True)
class Deliveries:
    events: list[EnrichedEvent]
    """Every distinct event once."""
    deliveries: list[EnrichedEvent]
    """What the loader receives: duplicates included, out of order."""


CLICKSTREAM_START = datetime(2026, 11, 20, tzinfo=UTC)


def clickstream(images: int = 300, devices: int = 80, seed: int = 7, duplicate_share: float = 0.15) -> Deliveries:
    """About ``images`` images on ``devices`` devices over four days from :data:`CLICKSTREAM_START`,
    with the awkward parts real traffic has: re-entries, missing uploads and tool clicks, saves
    hours late, late flags, two sources and model versions; then resent and shuffled."""
    spec = JourneySpec(
        units=devices,
        id_prefix=f"cs{seed}-",
        start=CLICKSTREAM_START,
        exposure_window_s=3 * 86_400,
        images_per_unit_extra=max(images / devices - 1, 0.0),
        image_gap_s=3 * 3600,
        tool_rate=0.8,
        inference_rate=0.8,
        image_save_rate=0.7,
        score_rate=0.5,
        median_task_s=90.0,
        pre_exposure_share=0.0,
        completions=True,
        control_tools=(1, 2, 3),
        treatment_tools=(1, 2, 3),
        model_versions=("lama-1.0", "lama-1.1"),
        reentry_share=0.4,
        missing_upload_share=0.05,
        missing_tool_share=0.07,
        late_save_share=0.1,
    )
    payloads = collector_payloads(journeys(spec, seed))
    events = enriched(payloads, seed, late_share=0.03, sources=("web", "web", "ios"))
    rng = np.random.default_rng([seed, _RESEND])
    order = arrival_order(np.zeros(len(events)), rng, duplicate_share=duplicate_share, shuffle_share=1.0, within_s=1)
    return Deliveries(events=events, deliveries=[events[i] for i in order])


@dataclass
class RawStream:
    events: list[dict[str, Any]] = field(default_factory=list)
    """Every distinct event, with its collector stamps."""
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(key, value) in the order they are produced: shuffled, with duplicates."""

    @property
    def duplicates(self) -> int:
        return len(self.messages) - len(self.events)


def raw_stream(
    events: int,
    devices: int,
    *,
    duplicate_rate: float = 0.05,
    shuffle_rate: float = 0.10,
    shuffle_within_s: float = 300.0,
    start: datetime | None = None,
    seed: int = 7,
    median_task_s: float = 60.0,
    image_gap_s: float = 600.0,
) -> RawStream:
    """``events`` distinct ``events.raw`` records (as the collector writes them) of about
    ``devices`` devices, keyed by device: in event-time order except that ``shuffle_rate`` of them
    arrive up to ``shuffle_within_s`` late and ``duplicate_rate`` are resent up to that much later.
    Some tool clicks name a tool no dimension knows; one device in five is a crawler."""
    start = start or (datetime.now(UTC) - timedelta(hours=12)).replace(microsecond=0)
    per_device = max(events / devices, 1.0)
    spec = JourneySpec(
        units=devices,
        id_prefix=f"device-{seed}-",
        start=start,
        exposure_window_s=1800.0,
        login_rate=1 / 3,
        images_per_unit_extra=max(per_device / 5.0 - 1, 0.0),
        image_gap_s=image_gap_s,
        tool_rate=0.9,
        inference_rate=0.85,
        image_save_rate=0.7,
        median_task_s=median_task_s,
        pre_exposure_share=0.0,
        completions=True,
        control_tools=(1, 2, 3),
        treatment_tools=(1, 2, 3, 3),
        unknown_tool_share=0.2,
    )
    frame = journeys(spec, seed)
    while len(frame) < events:
        spec = replace(spec, images_per_unit_extra=spec.images_per_unit_extra * 1.5 + 0.5)
        frame = journeys(spec, seed)
    frame = frame.sort_values("event_ts", kind="stable").iloc[:events]
    payloads = collector_payloads(frame, library="funnelstream-js")
    stream = RawStream()
    agents: dict[str, str] = {}
    for raw in payloads:
        device = raw["anonymous_id"]
        agent = agents.setdefault(device, USER_AGENTS[len(agents) % len(USER_AGENTS)])
        at = raw["client_ts"]
        raw |= {"schema_version": 1, "sent_at": at, "received_at": at, "event_ts": at, "timestamp_flag": "ok"}
        raw["source"] = "web"
        raw["context"] = {"page_url": "https://edit.example.com/", "user_agent": agent, "locale": "en-US"}
        stream.events.append(raw)
    ts_s = ((frame["event_ts"] - pd.Timestamp(start)).dt.total_seconds()).to_numpy()
    order = arrival_order(
        ts_s,
        np.random.default_rng([seed, _ORDER]),
        duplicate_share=duplicate_rate,
        shuffle_share=shuffle_rate,
        within_s=shuffle_within_s,
    )
    values = [orjson.dumps(event) for event in stream.events]
    stream.messages = [(stream.events[i]["anonymous_id"].encode(), values[i]) for i in order]
    return stream


TRACKER_BATCH_EVENTS = (5, 20)
"""Events in a tracker's request (browser or mobile): it sends when it holds this many ..."""
TRACKER_FLUSH_S = 60.0
"""... or this long after the first event it holds, whichever comes first."""
SDK_BATCH_EVENTS = 500
"""Events in a server SDK's request: a full batch of the collector's limit."""


def raw_blocks(
    stream: RawStream,
    partitions: int,
    *,
    sdk_share: float = 0.5,
    seed: int = 7,
    tracker_flush_s: float | None = TRACKER_FLUSH_S,
) -> list[Block]:
    """The stream's messages as the collector writes them from realistic requests, the events in
    the collector's own bytes. About ``sdk_share`` of the devices are a server SDK's: their events
    go out in requests of 500, many devices each; the others' through a browser tracker, in
    requests of one device that leave when they hold 5 to 20 events or ``tracker_flush_s`` (event
    time) after their first, as a tracker's timer does; without a timer a request waits until it
    is full, which holds a device's events back up to the minutes between them (late, unless the
    worker's allowed lateness covers it). Each request becomes one block per partition; a device's
    events keep their arrival order."""
    canonical: dict[bytes, tuple[bytes, float]] = {}
    rng = np.random.default_rng([seed, _REQUESTS])
    low, high = TRACKER_BATCH_EVENTS
    blocks: list[Block] = []
    sdk_request: list[tuple[bytes, bytes]] = []
    tracker_requests: dict[bytes, tuple[int, float, list[tuple[bytes, bytes]]]] = {}
    opened: deque[tuple[float, bytes]] = deque()
    for key, value in stream.messages:
        known = canonical.get(value)
        if known is None:
            event = parse_event(orjson.loads(value))
            known = canonical[value] = (event_bytes(event.__dict__), (event.event_ts or event.client_ts).timestamp())
        document, at = known
        # Requests whose timer ran out by this event's time leave first, oldest first.
        while tracker_flush_s is not None and opened and opened[0][0] + tracker_flush_s < at:
            first_at, device = opened.popleft()
            pending = tracker_requests.get(device)
            if pending is not None and pending[1] == first_at:
                blocks += blocks_by_partition(pending[2], partitions)
                del tracker_requests[device]
        if (zlib.crc32(key) % 1000) < sdk_share * 1000:
            sdk_request.append((key, document))
            if len(sdk_request) == SDK_BATCH_EVENTS:
                blocks += blocks_by_partition(sdk_request, partitions)
                sdk_request = []
            continue
        pending = tracker_requests.get(key)
        if pending is None:
            pending = tracker_requests[key] = (int(rng.integers(low, high + 1)), at, [])
            opened.append((at, key))
        pending[2].append((key, document))
        if len(pending[2]) == pending[0]:
            blocks += blocks_by_partition(pending[2], partitions)
            del tracker_requests[key]
    for _, _, request in tracker_requests.values():
        blocks += blocks_by_partition(request, partitions)
    blocks += blocks_by_partition(sdk_request, partitions)
    return [block for block in blocks if block.count]


# --- warehouse rows ----------------------------------------------------------------------------

OPTIONAL_COLUMNS = ("browser", "os", "device", "source", "status")
"""Columns of ``events`` that :func:`warehouse_rows` writes when the frame has them."""
RECEIVED = datetime(2026, 11, 6, tzinfo=UTC)
"""``received_at`` of every row :func:`warehouse_rows` makes."""
_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_STRING_MAP = pa.map_(pa.string(), pa.string())


def _uuids(high: int, low: np.ndarray) -> pa.Array:
    """Distinct version-4-shaped UUIDs (16 bytes each) from a 32-bit ``high`` and each value of ``low``."""
    n = len(low)
    raw = np.zeros((n, 16), np.uint8)
    raw[:, :4] = np.frombuffer(int(high).to_bytes(4, "big"), np.uint8)
    raw[:, 6] = 0x40
    raw[:, 8:] = low.astype(">u8").view(np.uint8).reshape(n, 8)
    raw[:, 8] |= 0x80
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(raw.tobytes())])


def _strings(frame: pd.DataFrame, column: str) -> pa.Array:
    if column not in frame.columns:
        return pa.nulls(len(frame), pa.string())
    values = frame[column]
    if isinstance(values.dtype, pd.CategoricalDtype):
        return pa.array(values, from_pandas=True).dictionary_decode().cast(pa.string())
    return pa.array(values.to_numpy(object), pa.string(), from_pandas=True)


def warehouse_rows(events: pd.DataFrame, experiment_key: str, salt: int = 0) -> pa.Table:
    """A frame of :func:`journeys`'s columns as columns of the warehouse's ``events`` table, for
    one Arrow insert; the table's defaults fill the rest, as for a loader row without them.

    Every event of a unit carries its first exposure's arm in the ``experiments`` map, as the
    tracker would; an exposure carries its own. Optional columns of ``events``: ``user_id``,
    ``properties`` (a dict per row, e.g. ``{"assignment_source": "forced"}``), ``experiments``
    (a dict per row, replacing the derived map), and :data:`OPTIONAL_COLUMNS` (browser, os, device,
    source, status). ``salt`` keeps ids apart between frames of one insert.
    """
    n = len(events)
    events = events.reset_index(drop=True)
    for column in ("variant", "input_id", "experiment_key"):
        if column not in events.columns:
            events = events.assign(**{column: None})
    variant = events["variant"].astype(object).where(events["variant"].notna(), None)
    exposed = (
        events.loc[events["event_type"].eq("experiment_exposure") & variant.notna()]
        .sort_values("event_ts", kind="stable")
        .drop_duplicates("anonymous_id")
    )
    # The unit's arm on each row, by integer codes (a string-keyed map is far slower at this size).
    codes, units = pd.factorize(events["anonymous_id"])
    arm = np.full(len(units), None, dtype=object)
    arm[pd.Index(units).get_indexer(exposed["anonymous_id"])] = exposed["variant"].to_numpy(object)
    seen_in = variant.where(variant.notna(), pd.Series(arm[codes], index=events.index))
    if "experiments" in events.columns:
        pairs = [list(m.items()) if isinstance(m, dict) else [] for m in events["experiments"]]
        maps = pa.array(pairs, _STRING_MAP)
    else:
        tagged = seen_in.notna().to_numpy()
        offsets = np.concatenate([[0], np.cumsum(tagged)]).astype(np.int32)
        keys = pa.array(np.full(int(tagged.sum()), experiment_key, dtype=object), pa.string())  # one chunk at any size
        items = pa.array(seen_in[tagged].astype(str).to_numpy(), pa.string())
        maps = pa.MapArray.from_arrays(pa.array(offsets), keys, items)
    if "properties" in events.columns:
        properties = pa.array([json.dumps(p) if isinstance(p, dict) else "{}" for p in events["properties"]])
    else:
        properties = pa.array(np.full(n, "{}"), pa.string())
    image_codes, _ = pd.factorize(events["input_id"])
    input_ids = pc.if_else(
        pa.array(image_codes < 0), pa.scalar(None, pa.binary(16)), _uuids(2 * salt + 1, np.maximum(image_codes, 0))
    )
    if "funnel_step" in events.columns:
        steps = events["funnel_step"].fillna(0)
    else:
        steps = events["event_type"].map({str(k): int(v) for k, v in FUNNEL_STEP_OF.items()}).fillna(0)
    received = pa.array(np.full(n, int(RECEIVED.timestamp() * 1000), np.int64)).cast(_TIMESTAMP)
    ts = pa.array(pd.to_datetime(events["event_ts"], utc=True).dt.floor("ms"), _TIMESTAMP)
    scores = events["score"].astype(float).to_numpy() if "score" in events.columns else np.full(n, np.nan)
    columns = {
        "event_id": _uuids(2 * salt, np.arange(n)),
        "event_type": pa.array(events["event_type"].astype(str).to_numpy(), pa.string()),
        "schema_version": pa.array(np.ones(n, dtype=np.uint16)),
        "anonymous_id": pa.array(events["anonymous_id"].astype(str).to_numpy(), pa.string()),
        "user_id": _strings(events, "user_id"),
        "input_id": input_ids,
        "session_id": pa.array((events["anonymous_id"].astype(str) + "-s").to_numpy(), pa.string()),
        "client_ts": ts,
        "received_at": received,
        "event_ts": ts,
        "funnel_step": pa.array(steps.to_numpy(np.uint8)),
        "score": pa.array(np.nan_to_num(np.round(scores)).astype(np.uint8), mask=np.isnan(scores)),
        "experiment_key": _strings(events, "experiment_key"),
        "variant": pa.array(variant.to_numpy(object), pa.string()),
        "experiments": maps,
        "properties": properties,
        "enriched_at": received,
    }
    # Client dimensions and inference status only when the frame has them: the table's defaults
    # (NULL, and '' for source) are what a loader row without them gets.
    for column in OPTIONAL_COLUMNS:
        if column in events.columns:
            columns[column] = _strings(events, column)
    if "source" in columns:
        columns["source"] = pc.fill_null(columns["source"], "")  # not Nullable in the table
    return pa.table(columns)
