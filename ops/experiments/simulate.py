"""Seeded simulation of an experiment's event stream, with known truth.

Used by the test suite to check that the analysis recovers a planted effect, and by the end-to-end
check to drive the real pipeline. Everything is vectorised numpy: a 2,000-unit run takes
milliseconds to generate.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import optimize

from funnelstream.contract import FUNNEL_STEP_OF, EventType


@dataclass(frozen=True, slots=True)
class SimulationSpec:
    units: int = 2000
    experiment_key: str = "segmentation_tool"
    control: str = "control"
    treatment: str = "treatment"
    treatment_weight: float = 0.5
    images_per_unit_extra: float = 1.0
    """Each unit edits 1 + Poisson(this) images."""
    tool_rate: float = 0.9
    inference_rate: float = 0.9
    control_save_conversion: float = 0.40
    """Share of control units that save at least one image after exposure."""
    save_conversion_lift: float = 0.0
    """Absolute points added to that share in the treatment arm."""
    task_time_factor: float = 1.0
    """Treatment task time per image = control's times this factor."""
    median_task_s: float = 60.0
    task_sigma: float = 0.6
    unit_speed_sigma: float = 0.3
    score_rate: float = 0.5
    contaminated_share: float = 0.0
    """Units also exposed to the other arm, as a second device after login would be."""
    pre_exposure_share: float = 0.2
    """Control units with an upload-tool-save before their exposure, which must not count."""
    start: datetime = datetime(2026, 11, 2, tzinfo=UTC)
    exposure_window_s: float = 3 * 86_400
    """Units are first exposed uniformly over this long after ``start``."""


@dataclass(frozen=True, slots=True)
class SimulationTruth:
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


def simulate(
    spec: SimulationSpec, seed: int, assigned: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, SimulationTruth]:
    """Events of ``spec.units`` exposed units and the truth they were drawn from.

    ``assigned`` (unit id → variant) replaces the simulated coin flip, so an end-to-end run can
    take its arms from the collector's ``/v1/assignments``.
    """
    rng = np.random.default_rng(seed)
    if assigned is not None:
        unit_ids = np.array(list(assigned), dtype=str)
        treated = np.array([assigned[unit] == spec.treatment for unit in unit_ids], dtype=bool)
        rng.random(len(unit_ids))  # keep the draws that follow identical to a simulated assignment
    else:
        treated = rng.random(spec.units) < spec.treatment_weight
        unit_ids = np.char.add(f"s{seed}-u", np.arange(spec.units).astype(str))
    n = len(unit_ids)
    variant = np.where(treated, spec.treatment, spec.control)
    exposure_s = rng.uniform(0, spec.exposure_window_s, n)

    reach_save = spec.tool_rate * spec.inference_rate
    q_control = _image_save_probability(spec.control_save_conversion, spec.images_per_unit_extra) / reach_save
    q_treat = (
        _image_save_probability(spec.control_save_conversion + spec.save_conversion_lift, spec.images_per_unit_extra)
        / reach_save
    )
    if max(q_control, q_treat) > 1:
        raise ValueError("save conversion too high for the tool and inference rates")

    images = 1 + rng.poisson(spec.images_per_unit_extra, n)
    owner = np.repeat(np.arange(n), images)
    m = len(owner)
    gaps = rng.exponential(900.0, m)
    cumulative = np.cumsum(gaps)
    group_start = np.repeat(cumulative[np.cumsum(images) - images] - gaps[np.cumsum(images) - images], images)
    upload_s = exposure_s[owner] + 30.0 + (cumulative - group_start)
    tool = rng.random(m) < spec.tool_rate
    inference = tool & (rng.random(m) < spec.inference_rate)
    save = inference & (rng.random(m) < np.where(treated[owner], q_treat, q_control))
    scored = save & (rng.random(m) < spec.score_rate)
    speed = rng.lognormal(0.0, spec.unit_speed_sigma, n)
    duration = (
        speed[owner]
        * rng.lognormal(math.log(spec.median_task_s), spec.task_sigma, m)
        * np.where(treated[owner], spec.task_time_factor, 1.0)
    )
    score = np.clip(np.round(rng.normal(np.where(treated[owner], 3.8, 3.6), 1.0)), 1, 5)
    tool_s = upload_s + 10.0
    save_s = tool_s + duration

    image_ids = np.char.add(f"s{seed}-i", np.arange(m).astype(str))
    parts: list[dict[str, np.ndarray]] = [
        {
            "anonymous_id": unit_ids,
            "ts": exposure_s,
            "type": np.full(n, EventType.EXPERIMENT_EXPOSURE.value),
            "variant": variant,
            "input_id": np.full(n, None),
            "score": np.full(n, np.nan),
        },
    ]

    def image_events(mask: np.ndarray, ts: np.ndarray, kind: EventType, scores: np.ndarray | None = None) -> None:
        parts.append(
            {
                "anonymous_id": unit_ids[owner[mask]],
                "ts": ts[mask],
                "type": np.full(int(mask.sum()), kind.value),
                "variant": np.full(int(mask.sum()), None),
                "input_id": image_ids[mask],
                "score": scores[mask] if scores is not None else np.full(int(mask.sum()), np.nan),
            }
        )

    everything = np.ones(m, dtype=bool)
    image_events(everything, upload_s, EventType.IMAGE_UPLOADED)
    image_events(tool, tool_s, EventType.TOOL_SELECTED)
    image_events(inference, tool_s + duration / 2, EventType.INFERENCE_REQUESTED)
    image_events(save, save_s, EventType.IMAGE_SAVED)
    image_events(scored, save_s + 5.0, EventType.SCORE_SUBMITTED, score)

    if spec.contaminated_share > 0:
        dirty = rng.random(n) < spec.contaminated_share
        other = np.where(treated, spec.control, spec.treatment)
        parts.append(
            {
                "anonymous_id": unit_ids[dirty],
                "ts": exposure_s[dirty] + 3600.0,
                "type": np.full(int(dirty.sum()), EventType.EXPERIMENT_EXPOSURE.value),
                "variant": other[dirty],
                "input_id": np.full(int(dirty.sum()), None),
                "score": np.full(int(dirty.sum()), np.nan),
            }
        )
    if spec.pre_exposure_share > 0:
        # Activity before exposure, in control only: counted by mistake it would bias every metric.
        early = ~treated & (rng.random(n) < spec.pre_exposure_share)
        count = int(early.sum())
        early_ids = np.char.add(f"s{seed}-pre", np.arange(count).astype(str))
        t = exposure_s[early] - 4000.0
        for offset, kind in (
            (0.0, EventType.IMAGE_UPLOADED),
            (10.0, EventType.TOOL_SELECTED),
            (20.0, EventType.INFERENCE_REQUESTED),
            (25.0, EventType.IMAGE_SAVED),
        ):
            parts.append(
                {
                    "anonymous_id": unit_ids[early],
                    "ts": t + offset,
                    "type": np.full(count, kind.value),
                    "variant": np.full(count, None),
                    "input_id": early_ids,
                    "score": np.full(count, np.nan),
                }
            )

    frame = pd.DataFrame({key: np.concatenate([part[key] for part in parts]) for key in parts[0]})
    events = pd.DataFrame(
        {
            "event_type": frame["type"],
            "anonymous_id": frame["anonymous_id"],
            "user_id": None,
            "input_id": frame["input_id"],
            "event_ts": pd.Timestamp(spec.start) + pd.to_timedelta(frame["ts"], unit="s"),
            "experiment_key": frame["type"]
            .eq(EventType.EXPERIMENT_EXPOSURE.value)
            .map({True: spec.experiment_key, False: None}),
            "variant": frame["variant"],
            "score": frame["score"],
            "funnel_step": frame["type"]
            .map({k.value: int(v) for k, v in FUNNEL_STEP_OF.items()})
            .fillna(0)
            .astype(int),
        }
    )
    truth = SimulationTruth(
        save_conversion_control=spec.control_save_conversion,
        save_conversion_treatment=spec.control_save_conversion + spec.save_conversion_lift,
        task_time_relative_lift=spec.task_time_factor - 1.0,
    )
    return events, truth


_EXTRA_FIELDS: dict[str, dict[str, object]] = {
    EventType.IMAGE_UPLOADED.value: {
        "input_url": "s3://funnelstream/inputs/simulated.png",
        "width": 1024,
        "height": 768,
        "size_bytes": 200_000,
        "content_type": "image/png",
    },
    EventType.TOOL_SELECTED.value: {},
    EventType.INFERENCE_REQUESTED.value: {"inference_id": 1},
    EventType.IMAGE_SAVED.value: {},
    EventType.SCORE_SUBMITTED.value: {},
}
RECEIVED = datetime(2026, 11, 6, tzinfo=UTC)
"""``received_at`` of every simulated row loaded into the warehouse."""
_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_STRING_MAP = pa.map_(pa.string(), pa.string())
_ID_NAMESPACE = uuid.UUID("0b5a3c1e-2f1d-4c55-9a43-5d2f5e0c7a10")


def client_events(
    events: pd.DataFrame, experiment_key: str, tool_id: int = 3, sent_at: datetime | None = None
) -> list[dict[str, object]]:
    """The simulated funnel events as a tracker would POST them to ``/v1/batch`` (contract JSON).

    Exposure rows are left out: in an end-to-end run the collector logs them at assignment.
    Ids derive from the simulated ones, so the same frame always yields the same events.
    """
    assigned = (
        events.dropna(subset=["variant"]).drop_duplicates("anonymous_id").set_index("anonymous_id")["variant"].to_dict()
    )
    sent = (sent_at or datetime.now(UTC)).isoformat()
    out: list[dict[str, object]] = []
    for index, row in enumerate(events.itertuples(index=False)):
        if row.event_type not in _EXTRA_FIELDS:
            continue
        image = str(uuid.uuid5(_ID_NAMESPACE, str(row.input_id)))
        event: dict[str, object] = {
            "event_id": str(uuid.uuid5(_ID_NAMESPACE, f"{row.input_id}:{row.event_type}:{index}")),
            "event_type": row.event_type,
            "anonymous_id": row.anonymous_id,
            "input_id": image,
            "client_ts": row.event_ts.isoformat(),
            "sent_at": sent,
            "experiments": {experiment_key: assigned[row.anonymous_id]} if row.anonymous_id in assigned else {},
            **_EXTRA_FIELDS[row.event_type],
        }
        job = str(uuid.uuid5(_ID_NAMESPACE, f"job:{row.input_id}"))
        if row.event_type == EventType.TOOL_SELECTED.value:
            event["tool_id"] = tool_id
        elif row.event_type in (EventType.INFERENCE_REQUESTED.value, EventType.IMAGE_SAVED.value):
            event["job_id"] = job
        elif row.event_type == EventType.SCORE_SUBMITTED.value:
            event["job_id"] = job
            event["score"] = int(row.score)
        out.append(event)
    return out


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
    values = frame[column].astype(object)
    return pa.array(values.where(values.notna(), None).tolist(), pa.string())


def warehouse_rows(events: pd.DataFrame, experiment_key: str, salt: int = 0) -> pa.Table:
    """The rows of a simulated frame (``simulate()``'s columns) as columns of the warehouse's ``events``
    table, for one Arrow insert; the table's defaults fill the rest, as for a loader row without them.

    Every event of a unit carries its first exposure's arm in the ``experiments`` map, as the
    tracker would; an exposure carries its own. Optional columns of ``events``: ``user_id``,
    ``properties`` (a dict per row, e.g. ``{"assignment_source": "forced"}``), ``experiments``
    (a dict per row, replacing the derived map). ``salt`` keeps ids apart between frames of one insert.
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
    codes, devices = pd.factorize(events["anonymous_id"])
    arm = np.full(len(devices), None, dtype=object)
    arm[pd.Index(devices).get_indexer(exposed["anonymous_id"])] = exposed["variant"].to_numpy(object)
    seen_in = variant.where(variant.notna(), pd.Series(arm[codes], index=events.index))
    if "experiments" in events.columns:
        pairs = [list(m.items()) if isinstance(m, dict) else [] for m in events["experiments"]]
        maps = pa.array(pairs, _STRING_MAP)
    else:
        tagged = seen_in.notna().to_numpy()
        offsets = np.concatenate([[0], np.cumsum(tagged)]).astype(np.int32)
        keys = pa.array(np.full(int(tagged.sum()), experiment_key), pa.string())
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
    return pa.table(columns)
