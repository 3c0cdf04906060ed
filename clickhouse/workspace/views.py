"""The funnel page's view: its controls and its panels, each panel one route of the query API.

The controls are the fields of the page's GET form, named like the query parameters of the routes
behind the panels, so the page's URL is its whole state and each panel's route reads the same
fields. Invariant: no control holds a value the page did not receive; an unknown one selects nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from clickhouse.queries import DEFAULT_STEPS, MAX_STEPS, SIZE_BUCKETS, Breakdown, FunnelMode, Unit
from clickhouse.workspace.panels import PageState, PanelLink
from funnelstream.contract import EventType

STEP_EVENTS = tuple(str(event) for event in EventType if event is not EventType.PIPELINE_HEARTBEAT)
UNIT_LABELS = {str(Unit.IMAGE): "image", str(Unit.DEVICE): "device", str(Unit.SESSION): "session"}
FILTERS = (
    ("tool", "Tool"),
    ("inference_type", "Inference"),
    ("variant", "Variant"),
    ("source", "Source"),
    ("browser", "Browser"),
    ("os", "OS"),
    ("device", "Device type"),
    ("size", "Image size"),
)
"""Every dimension a funnel can be filtered on: (query parameter, label)."""


@dataclass(frozen=True, slots=True)
class Choice:
    name: str
    label: str
    value: str
    options: tuple[tuple[str, str], ...] = ()
    """(value, label) of a select; empty for a text field."""
    kind: str = "text"
    blank: str | None = None
    """The label of an empty first option of a select (any / none); None: no empty option."""


def funnel_panels(state: PageState) -> list[PanelLink]:
    """The funnel and what explains it, at the drop-off step the page chose."""
    return [
        PanelLink("steps", "Conversion and drop-off per step", "/v1/funnel"),
        PanelLink("over-time", "Conversion over time", "/v1/funnel/over-time"),
        PanelLink("time-to-convert", "Time to convert per step", "/v1/funnel/time-to-convert/histogram"),
        PanelLink("correlation", "What drives drop-off at the chosen step", "/v1/funnel/correlation"),
        PanelLink("paths", "Paths after drop-off", "/v1/funnel/paths-after-dropoff"),
        PanelLink("dropped", "Units that dropped at the chosen step", "/v1/funnel/dropped"),
    ]


def chosen_steps(state: PageState) -> list[str]:
    """The steps the page holds: ``steps`` comma-separated (or repeated, from a form without script)."""
    values = state.getlist("steps") if hasattr(state, "getlist") else [state.get("steps", "")]
    steps = [step.strip() for value in values for step in value.split(",") if step.strip()]
    return steps[:MAX_STEPS] if steps else [str(step) for step in DEFAULT_STEPS]


def funnel_controls(state: PageState) -> dict[str, object]:
    """The GET form's fields with the page's values, for the funnel template."""
    steps = chosen_steps(state)
    events = tuple((event, event) for event in STEP_EVENTS)
    sizes = tuple((name, name) for name, _, _ in SIZE_BUCKETS)

    def text(name: str, label: str, default: str = "", kind: str = "text") -> Choice:
        return Choice(name, label, state.get(name, default), kind=kind)

    def select(
        name: str, label: str, options: tuple[tuple[str, str], ...], default: str = "", blank: str | None = None
    ) -> Choice:
        return Choice(name, label, state.get(name, default), options, "select", blank)

    def listed(values: type[StrEnum]) -> tuple[tuple[str, str], ...]:
        return tuple((str(member), str(member)) for member in values)

    step_choices = [
        Choice(
            "steps",
            f"Step {index + 1}",
            steps[index] if index < len(steps) else "",
            events,
            "select",
            None if index == 0 else "—",
        )
        for index in range(MAX_STEPS)
    ]
    filters = [
        select(name, label, sizes, blank="any") if name == "size" else text(name, label) for name, label in FILTERS
    ]
    options = [
        text("from", "From (UTC)"),
        text("to", "To (UTC)"),
        text("window", "Window (s)", "3600", "number"),
        select("unit", "Unit", tuple(UNIT_LABELS.items()), str(Unit.IMAGE)),
        select("mode", "Order", listed(FunnelMode), str(FunnelMode.ORDERED)),
        select("exclude", "Exclusion step", events, blank="none"),
        select("breakdown", "Breakdown", listed(Breakdown), str(Breakdown.NONE)),
        text("experiment", "Experiment"),
        select("step", "Drop-off step", tuple((str(k), str(k)) for k in range(2, MAX_STEPS + 1)), "2"),
        select("interval", "Interval", (("hour", "hour"), ("day", "day")), "day"),
        text("min_count", "Min. count", kind="number"),
    ]  # fmt: skip
    return {"steps": step_choices, "filters": filters, "options": options}
