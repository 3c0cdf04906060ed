"""``make soak``: the whole pipeline for half an hour at a steady rate; does anything grow or fall behind?

The four services start once (``ops.pipeline.local_pipeline``, on the local stack, topics and
warehouse of their own); ``ops.load.drive`` then offers ``--rate`` events/s for ``--duration-s``
(default 1800) in batches, ``--malformed-share`` of them (5 %) broken on purpose and
``--resend-share`` of the batches (5 %) sent again later with the same ``event_id``s, as a client
does that never saw its 202 (:class:`ResendingFactory`). Every ``--sample-s`` (10 s) a sampler reads
each process's resident memory (``VmRSS`` of ``/proc/<pid>/status``, summed over its process group:
the four services and the stack's Kafka brokers and S3 server, each started in its own session) and
the lag of each consumer group (``funnelstream.kafka.consumer_group_lag``: messages not yet
committed, blocks of events on ``events.raw``).

The verdict, every part of it required:

- **memory stops growing**: for each process, the median RSS of the last window
  (``--window-s``, 60 s) over the median of the first window after warm-up (``--warmup-s``, 300 s:
  minute 5) is at most ``1 + --max-rss-growth`` (10 %). Medians of six samples, so one GC or merge
  spike does not decide it. A run too short for that (a smoke run) warms up for a quarter of its
  duration and shrinks the windows to a third of what is left, so they never overlap;
- **lag stays bounded**: over the second half of the run, each group's lag never exceeds
  ``--max-lag`` messages (10,000 by default, the level at which ``funnelstream status`` calls a stage
  degraded) and its least-squares line rises by less than half that bound across the half, so a lag
  that is low but climbing steadily fails too;
- **nothing lost**: ``ops.load.verify`` finds every event that got a 202 in the warehouse exactly once
  after ``FINAL`` (the resends included), none that was not sent, every malformed one in
  ``dlq_events``; every distinct event sent was answered (accepted, or refused as malformed); and
  the rate was sustained: the open-loop generator offered at least ``SUSTAINED_SHARE`` of it (as
  ``ops.bench.pipeline`` counts a rate sustained; accepted events/s is lower by the malformed and
  resent ones, so offered events/s is the measure here);
- **every process alive** at every sample.

The stream worker keeps dedup records for 24 h, and a session open until 30 idle minutes plus the
5 minutes of allowed lateness have passed, by default: at a steady rate of new devices its state,
and so its memory, grows for longer than the soak runs, by design. The soak runs it with horizons
shorter than the warm-up (``--dedup-window-s`` 120, which still covers every resend, a few seconds
old; ``--session-gap-s`` 60 and ``--allowed-lateness-s`` 60: a session closes two minutes after its
last event), so whatever still grows after minute 5 is not state the settings keep on purpose.

The default rate, 1,500 events/s, is a third of the highest rate the whole pipeline sustained for a
minute on this 2-core machine kind (4,500, ``make bench-pipeline``, ``bench/pipeline-after.json``):
thirty minutes add what a minute does not see (the warehouse's table and merges growing, Kafka's
segments rolling, the resends, the sampler and the generator on the same two cores), and a soak
measures growth, not the ceiling. That ceiling is reported beside the figures
(``pipeline_ceiling_events_per_s``, read from the file, with ``rate_share_of_ceiling``).

Writes ``bench/soak.json`` (the verdict and every sample) and ``bench/soak.svg`` (RSS per process and
lag per group over time, the warm-up and both windows marked; drawn here, no plotting library). The
last line printed is one JSON object: the verdict without the samples. Exit status 0 when it passes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from clickhouse.client import ApiReader
from clickhouse.qa.settings import QAConfig
from funnelstream.kafka import consumer_group_lag, make_admin
from funnelstream.settings import ServiceSettings
from funnelstream.topics import in_namespace
from infra.broker import KafkaService
from infra.objectstore import ObjectStoreService
from infra.service import InfraSettings, Service
from ops.bench.pipeline import SUSTAINED_SHARE, environment
from ops.load import POOL_EVENTS, EventFactory, LoadOptions, drive, send_figures, verify
from ops.pipeline import LocalPipeline, Ports, local_pipeline

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
CEILING_FILE = BENCH_DIR / "pipeline-after.json"
"""The whole pipeline's sustained rate (``make bench-pipeline``), reported as the soak's ceiling."""
RESEND_MEMORY = 200
"""Batches a resend is drawn from: the last ones sent, a few seconds' worth at the default rate."""


# --- resends ---------------------------------------------------------------------------------------


class ResendingFactory(EventFactory):
    """Journeys as :class:`ops.load.EventFactory` draws them, where ``resend_share`` of the batches are
    one of the last :data:`RESEND_MEMORY` batches again: the same events with the same ``event_id``s,
    as a client sends them when it did not see the 202. The pipeline must keep one copy of each."""

    def __init__(self, seed: int, malformed_share: float, resend_share: float, pool_events: int = POOL_EVENTS) -> None:
        super().__init__(seed, malformed_share, pool_events)
        self.resend_share = resend_share
        self.resent_events = 0
        self._recent: deque[list[dict[str, Any]]] = deque(maxlen=RESEND_MEMORY)
        self._resend_rng = random.Random(f"resend-{seed}")

    def batch(self, size: int) -> list[dict[str, Any]]:
        if self._recent and self._resend_rng.random() < self.resend_share:
            again = self._recent[self._resend_rng.randrange(len(self._recent))]
            self.resent_events += len(again)
            return list(again)
        events = super().batch(size)
        self._recent.append(events)
        return events


# --- sampling --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t_s: float
    """Seconds since the load started."""
    rss_kb: dict[str, int | None]
    """Process → resident kB of its process group; None when it was not running."""
    lag: dict[str, int | None]
    """Consumer group (its stage name) → messages not committed; None when Kafka did not answer."""


def process_groups(proc: Path = Path("/proc")) -> dict[int, list[int]]:
    """Process group id → the pids in it, from ``/proc/<pid>/stat``."""
    groups: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        # The command name may hold spaces and parentheses; the fields after its last ")" do not.
        fields = stat[stat.rindex(")") + 2 :].split()
        groups.setdefault(int(fields[2]), []).append(int(entry.name))
    return groups


def rss_kb(pid: int, proc: Path = Path("/proc")) -> int | None:
    """``VmRSS`` of one process in kB; None for a process gone (or a kernel thread, which has none)."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def group_rss_kb(leader: int | None, groups: Mapping[int, Sequence[int]], proc: Path = Path("/proc")) -> int | None:
    """Resident kB of every process in ``leader``'s group (a service and the children it started);
    None when the leader is not running."""
    if leader is None or rss_kb(leader, proc) is None:
        return None
    return sum(rss_kb(pid, proc) or 0 for pid in groups.get(leader, [leader]))


def watched_processes(pipeline: LocalPipeline) -> Callable[[], dict[str, int | None]]:
    """Name → pid of what the soak watches: the four services and the stack's processes (each Kafka
    broker, the S3 server; ClickHouse is chdb, inside the warehouse process). Asked again at every
    sample (from the pid each recorded, no health probe), so a restarted one is followed."""
    settings = InfraSettings()
    stack: list[Service] = [*KafkaService(settings).brokers, ObjectStoreService(settings)]

    def pids() -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for name, service in pipeline.services.items():
            found[name] = service.process.pid if service.running and service.process else None
        for managed in stack:
            found[managed.name] = managed.process.running_pid()
        return found

    return pids


class Sampler:
    """Every ``interval_s``, in a thread of its own: RSS of each watched process, lag of each group."""

    def __init__(
        self,
        pids: Callable[[], dict[str, int | None]],
        lags: Callable[[], dict[str, int | None]],
        interval_s: float,
    ) -> None:
        self.pids = pids
        self.lags = lags
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._started = 0.0

    def start(self) -> Sampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        return self.samples

    def sample(self) -> Sample:
        t_s = round(time.monotonic() - self._started, 1)
        groups = process_groups()
        rss = {name: group_rss_kb(pid, groups) for name, pid in self.pids().items()}
        return Sample(t_s, rss, self.lags())

    def _run(self) -> None:
        while True:
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # a failed sample is reported, and the next one tried
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            if self._stop.wait(self.interval_s):
                return


def group_lags(groups: Mapping[str, str]) -> Callable[[], dict[str, int | None]]:
    """Stage → total lag of its consumer group, through one admin client kept for the run."""
    config = ServiceSettings().kafka
    admin = make_admin(config)

    def lags() -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for stage, group in groups.items():
            try:
                found[stage] = consumer_group_lag(config, group, timeout_s=5.0, admin=admin).total
            except Exception:  # Kafka busy or away for a moment: a gap in the line, not the end of the run
                found[stage] = None
        return found

    return lags


# --- the verdict -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    warmup_s: float = 300.0
    window_s: float = 60.0
    max_rss_growth: float = 0.10
    max_lag: int = 10_000


@dataclass(frozen=True)
class Windows:
    """Where the baseline and the final window lie, in seconds since the load started."""

    warmup_s: float
    baseline: tuple[float, float]
    final: tuple[float, float]

    @classmethod
    def of(cls, duration_s: float, thresholds: Thresholds) -> Windows:
        """The thresholds' windows; for a run too short for them, warm-up a quarter of it and windows
        a third of the rest, so the baseline and the final window never overlap."""
        warmup = min(thresholds.warmup_s, duration_s / 4)
        window = min(thresholds.window_s, (duration_s - warmup) / 3)
        return cls(warmup, (warmup, warmup + window), (duration_s - window, duration_s))


def _median_in(values: Sequence[tuple[float, int | None]], span: tuple[float, float]) -> float | None:
    inside = [value for t_s, value in values if span[0] <= t_s <= span[1] and value is not None]
    return statistics.median(inside) if inside else None


def slope_per_s(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``points`` (t, value); 0 for fewer than two distinct times."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def rss_verdict(
    samples: Sequence[Sample], windows: Windows, max_growth: float
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per process: baseline and final medians (MB), growth, the largest sample; and the problems."""
    figures: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    names = sorted({name for sample in samples for name in sample.rss_kb})
    for name in names:
        series = [(sample.t_s, sample.rss_kb.get(name)) for sample in samples]
        missing = [t_s for t_s, value in series if value is None]
        baseline = _median_in(series, windows.baseline)
        final = _median_in(series, windows.final)
        growth = (final / baseline - 1) if baseline and final is not None else None
        present = [value for _, value in series if value is not None]
        figures[name] = {
            "baseline_mb": round(baseline / 1024, 1) if baseline is not None else None,
            "final_mb": round(final / 1024, 1) if final is not None else None,
            "growth": round(growth, 4) if growth is not None else None,
            "max_mb": round(max(present) / 1024, 1) if present else None,
        }
        if missing:
            problems.append(f"{name}: not running at {len(missing)} samples (first at {missing[0]:.0f}s)")
        if growth is None:
            problems.append(f"{name}: no RSS in the baseline or the final window")
        elif growth > max_growth + 1e-9:  # 110 / 100 - 1 is a hair above 0.10 in floating point
            problems.append(f"{name}: RSS grew {growth:.1%} after warm-up (at most {max_growth:.0%})")
    return figures, problems


def lag_verdict(
    samples: Sequence[Sample], duration_s: float, max_lag: int
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per group over the second half of the run: the largest lag, its least-squares rise across the
    half; and the problems (see the module)."""
    figures: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    half = duration_s / 2
    names = sorted({name for sample in samples for name in sample.lag})
    for name in names:
        points = [
            (sample.t_s, float(value))
            for sample in samples
            if sample.t_s >= half and (value := sample.lag.get(name)) is not None
        ]
        if not points:
            figures[name] = {"max_second_half": None, "rise_second_half": None}
            problems.append(f"lag of {name}: no reading in the second half")
            continue
        peak = max(value for _, value in points)
        rise = slope_per_s(points) * (duration_s - half)
        figures[name] = {
            "max_second_half": int(peak),
            "rise_second_half": round(rise, 1),
            "mean_second_half": round(statistics.fmean(value for _, value in points), 1),
        }
        if peak > max_lag:
            problems.append(f"lag of {name}: {peak:.0f} messages in the second half (at most {max_lag})")
        if rise > max_lag / 2:
            problems.append(f"lag of {name}: climbing, {rise:.0f} messages across the second half")
    return figures, problems


def delivery_problems(figures: Mapping[str, Any], resent_events: int) -> list[str]:
    """What ``verify`` and the send figures say against "nothing lost, the rate sustained": every
    distinct event sent answered (accepted, or refused as malformed), none lost or doubled, and the
    generator offered at least ``SUSTAINED_SHARE`` of the rate (it waits, and offers less, only when
    the collector holds its requests past ``LoadOptions.max_in_flight``)."""
    problems = [
        f"{figures[key]} {label}"
        for key, label in (
            ("lost", "accepted events lost"),
            ("duplicated", "events duplicated after FINAL"),
            ("unexpected", "events present that were not sent"),
            ("malformed_missing", "malformed events not in dlq_events"),
            ("not_accepted", "events never accepted (clients gave up)"),
        )
        if figures.get(key)
    ]
    distinct = int(figures.get("sent") or 0) - resent_events
    answered = int(figures.get("accepted") or 0) + int(figures.get("rejected_as_invalid") or 0)
    if answered < distinct:
        problems.append(f"{distinct - answered} of {distinct} distinct events sent got no answer")
    rate = float(figures.get("rate") or 0.0)
    duration_s = float(figures.get("duration_s") or 0.0)
    offered = int(figures.get("sent") or 0) / duration_s if duration_s else 0.0
    if offered < SUSTAINED_SHARE * rate:
        problems.append(
            f"offered {offered:.0f}/s of {rate:.0f}/s (below {SUSTAINED_SHARE:.0%}): the collector held it back"
        )
    return problems


# --- the plot --------------------------------------------------------------------------------------

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
WIDTH, PANEL_HEIGHT = 960, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 190, 40, 45


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Ticks from 0 to at least ``high`` at a step of 1, 2 or 5 times a power of ten."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(factor * power for factor in (1, 2, 5, 10) if factor * power >= raw)
    return [round(step * index, 10) for index in range(math.ceil(high / step - 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:g}"


@dataclass
class Panel:
    title: str
    unit: str
    series: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)


def _panel_svg(panel: Panel, top: float, x_max: float, marks: Windows | None) -> list[str]:
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_top, bottom = top + MARGIN_TOP, top + PANEL_HEIGHT - MARGIN_BOTTOM
    values = [value for points in panel.series.values() for _, value in points if value is not None]
    y_ticks = nice_ticks(max(values, default=0.0))
    x_ticks = nice_ticks(x_max, 8)
    y_max, x_end = y_ticks[-1], x_ticks[-1]

    def x(t: float) -> float:
        return left + (right - left) * t / x_end

    def y(value: float) -> float:
        return bottom - (bottom - plot_top) * value / y_max

    out = [f'<text x="{left}" y="{top + 24}" class="title">{escape(panel.title)}</text>']
    if marks is not None:
        out.append(
            f'<rect x="{x(0):.1f}" y="{plot_top}" width="{x(marks.warmup_s / 60) - x(0):.1f}" '
            f'height="{bottom - plot_top}" class="warmup"><title>warm-up</title></rect>'
        )
        for name, (start, end) in (("baseline window", marks.baseline), ("final window", marks.final)):
            out.append(
                f'<rect x="{x(start / 60):.1f}" y="{plot_top}" width="{x(end / 60) - x(start / 60):.1f}" '
                f'height="{bottom - plot_top}" class="window"><title>{name}</title></rect>'
            )
    for tick in y_ticks:
        out.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{right}" y2="{y(tick):.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" class="ylabel">{_label(tick)}</text>')
    for tick in x_ticks:
        out.append(f'<line x1="{x(tick):.1f}" y1="{bottom}" x2="{x(tick):.1f}" y2="{bottom + 5}" class="axis"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{bottom + 18}" class="xlabel">{_label(tick)}</text>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>')
    out.append(f'<line x1="{left}" y1="{plot_top}" x2="{left}" y2="{bottom}" class="axis"/>')
    out.append(f'<text x="{(left + right) / 2}" y="{bottom + 36}" class="xlabel">minutes</text>')
    out.append(
        f'<text x="16" y="{(plot_top + bottom) / 2}" class="unit" '
        f'transform="rotate(-90 16 {(plot_top + bottom) / 2})">{escape(panel.unit)}</text>'
    )
    for index, (name, points) in enumerate(panel.series.items()):
        colour = PALETTE[index % len(PALETTE)]
        # A missing reading breaks the line rather than joining across it.
        runs: list[list[tuple[float, float]]] = [[]]
        for t_min, value in points:
            if value is None:
                runs.append([])
            else:
                runs[-1].append((t_min, value))
        for run in runs:
            if run:
                coordinates = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
                out.append(
                    f'<polyline points="{coordinates}" stroke="{colour}" class="series">'
                    f"<title>{escape(name)}</title></polyline>"
                )
        legend_y = plot_top + 8 + index * 18
        out.append(
            f'<line x1="{right + 14}" y1="{legend_y}" x2="{right + 38}" y2="{legend_y}" '
            f'stroke="{colour}" class="series"/>'
        )
        out.append(f'<text x="{right + 44}" y="{legend_y + 4}" class="legend">{escape(name)}</text>')
    return out


def render_svg(samples: Sequence[Sample], windows: Windows | None = None, title: str = "soak") -> str:
    """RSS (MB) per process above, lag (messages) per group below, over minutes; a standalone SVG."""
    rss = Panel("Resident memory per process", "MB")
    lag = Panel("Consumer lag per group", "messages")
    for sample in samples:
        for name, kb in sample.rss_kb.items():
            rss.series.setdefault(name, []).append((sample.t_s / 60, kb / 1024 if kb is not None else None))
        for name, value in sample.lag.items():
            lag.series.setdefault(name, []).append((sample.t_s / 60, float(value) if value is not None else None))
    x_max = max((sample.t_s for sample in samples), default=60.0) / 60
    height = 2 * PANEL_HEIGHT + 30
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        "<style>"
        ".title{font-size:14px;font-weight:bold}.ylabel{text-anchor:end}.xlabel{text-anchor:middle}"
        ".unit{text-anchor:middle}.grid{stroke:#e5e5e5}.axis{stroke:#333}"
        ".series{fill:none;stroke-width:1.6}.warmup{fill:#f0f0f0}.window{fill:#fff3c4}"
        "</style>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN_LEFT}" y="18" class="title">{escape(title)}</text>',
        *_panel_svg(rss, 10, x_max, windows),
        *_panel_svg(lag, 10 + PANEL_HEIGHT, x_max, None),
        "</svg>",
    ]
    return "\n".join(body) + "\n"


# --- running ---------------------------------------------------------------------------------------


def pipeline_ceiling(path: Path = CEILING_FILE) -> float | None:
    """The sustained rate of the last whole-pipeline bench, if one was kept."""
    try:
        return float(json.loads(path.read_text())["max_sustained_events_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def horizons_env(dedup_window_s: float, session_gap_s: float, allowed_lateness_s: float) -> dict[str, str]:
    """The stream worker's state horizons for the soak (see the module): shorter than the warm-up, so
    its dedup records and open sessions reach their steady state before the baseline is taken."""
    return {
        "FS_STREAM__DEDUP_WINDOW_S": f"{dedup_window_s:g}",
        "FS_STREAM__SESSION_GAP_S": f"{session_gap_s:g}",
        "FS_STREAM__ALLOWED_LATENESS_S": f"{allowed_lateness_s:g}",
    }


def namespaced_groups(namespace: str | None) -> dict[str, str]:
    """Stage → consumer group, as ``funnelstream status`` watches them, inside the run's namespace."""
    return {stage: in_namespace(group, namespace or "") for stage, group in QAConfig().consumer_groups.items()}


def soak(args: argparse.Namespace) -> tuple[dict[str, Any], list[Sample], Windows]:
    """Run it; the verdict's figures (samples included), the samples, and the windows they were judged by."""
    thresholds = Thresholds(args.warmup_s, args.window_s, args.max_rss_growth, args.max_lag)
    seed = args.seed if args.seed is not None else random.randrange(10**8, 10**9)
    base = args.port_base
    started = time.monotonic()
    with (
        environment(horizons_env(args.dedup_window_s, args.session_gap_s, args.allowed_lateness_s)),
        local_pipeline("soak", Ports.from_base(base)) as pipeline,
    ):
        startup_s = time.monotonic() - started
        options = LoadOptions(
            rate=args.rate,
            duration_s=args.duration_s,
            batch_size=args.batch_size,
            malformed_share=args.malformed_share,
            ingest_url=pipeline.ingest_url,
        )
        factory = ResendingFactory(seed, args.malformed_share, args.resend_share)
        factory.prefill(POOL_EVENTS)  # drawn before the clock starts: the generator's cost is not the soak's
        sampler = Sampler(watched_processes(pipeline), group_lags(namespaced_groups(pipeline.namespace)), args.sample_s)
        gc.collect()
        gc.freeze()
        sampler.start()
        try:
            log = asyncio.run(drive(options, factory))
        finally:
            samples = sampler.stop()
            gc.unfreeze()
        warehouse = ApiReader(pipeline.warehouse_url, pipeline.warehouse_read_key)
        try:
            verdict = verify(warehouse, factory, log, args.verify_timeout_s)
        finally:
            warehouse.close()
    figures = {**send_figures(options, log), **verdict.figures(), "ok": verdict.ok}
    figures["malformed_missing"] = len(verdict.malformed_missing)
    duration_s = round(log.sending_s, 1)
    windows = Windows.of(duration_s, thresholds)
    rss, rss_problems = rss_verdict(samples, windows, thresholds.max_rss_growth)
    lag, lag_problems = lag_verdict(samples, duration_s, thresholds.max_lag)
    problems = [*rss_problems, *lag_problems, *delivery_problems(figures, factory.resent_events), *sampler.errors[:5]]
    ceiling = pipeline_ceiling()
    keep = (
        "sent",
        "accepted",
        "accepted_per_s",
        "rejected_as_invalid",
        "not_accepted",
        "retries",
        "lost",
        "duplicated",
        "unexpected",
        "rows_final",
        "rows_raw",
        "malformed_sent",
        "malformed_in_dlq",
        "freshness_p50_ms",
        "freshness_p99_ms",
        "freshness_max_ms",
        "request_p99_ms",
        "generator_waited_s",
    )
    result = {
        "ok": not problems,
        "problems": problems,
        "rate": args.rate,
        "duration_s": round(duration_s, 1),
        "pipeline_ceiling_events_per_s": ceiling,
        "rate_share_of_ceiling": round(args.rate / ceiling, 3) if ceiling else None,
        "resend_share": args.resend_share,
        "resent_events": factory.resent_events,
        "malformed_share": args.malformed_share,
        **{key: figures.get(key) for key in keep},
        "rss": rss,
        "lag": lag,
        "thresholds": asdict(thresholds),
        "windows": asdict(windows),
        "sample_s": args.sample_s,
        "samples_taken": len(samples),
        "seed": seed,
        "startup_s": round(startup_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "samples": [asdict(sample) for sample in samples],
    }
    return result, samples, windows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=1800.0, help="Seconds of sending.")
    parser.add_argument("--rate", type=float, default=1500.0, help="Events/s offered (resends included).")
    parser.add_argument("--batch-size", type=int, default=LoadOptions.batch_size)
    parser.add_argument("--malformed-share", type=float, default=0.05)
    parser.add_argument("--resend-share", type=float, default=0.05, help="Share of batches sent again.")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument(
        "--dedup-window-s", type=float, default=120.0, help="The stream worker's dedup window (covers every resend)."
    )
    parser.add_argument("--session-gap-s", type=float, default=60.0, help="The stream worker's session gap.")
    parser.add_argument(
        "--allowed-lateness-s",
        type=float,
        default=60.0,
        help="The stream worker's lateness (a session closes after it and the gap).",
    )
    parser.add_argument("--warmup-s", type=float, default=Thresholds.warmup_s)
    parser.add_argument("--window-s", type=float, default=Thresholds.window_s)
    parser.add_argument("--max-rss-growth", type=float, default=Thresholds.max_rss_growth)
    parser.add_argument("--max-lag", type=int, default=Thresholds.max_lag, help="Messages, per group.")
    parser.add_argument("--verify-timeout-s", type=float, default=600.0)
    parser.add_argument("--port-base", type=int, default=18_700, help="Four ports from here for the services.")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="Folder for soak.json and soak.svg.")
    args = parser.parse_args(argv)
    result, samples, windows = soak(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    title = f"make soak: {result['rate']:,.0f} events/s for {result['duration_s'] / 60:.0f} min, " + (
        "passed" if result["ok"] else "failed"
    )
    (args.out / "soak.svg").write_text(render_svg(samples, windows, title))
    line = {key: value for key, value in result.items() if key != "samples"}
    print(json.dumps({**line, "json": str(args.out / "soak.json"), "svg": str(args.out / "soak.svg")}))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
