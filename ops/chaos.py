"""``make chaos``: faults under load, then an exact count of what arrived.

A private stack runs the four services; in each scenario (``stream_worker_kill``, ``loader_kill``,
``kafka_outage``, ``s3_outage_jobs``, ``collector_kill``) realistic traffic with malformed events flows
while one fault happens. Checked by ``event_id`` in ClickHouse: every event that got a 202 is there
exactly once, none that was not sent, every malformed one is in ``dlq_events`` with its reason, and
every job has exactly one result on ``inference.results``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from clickhouse.client import ApiReader
from funnelstream.kafka import make_consumer, private_group
from funnelstream.settings import ServiceSettings
from funnelstream.topics import Topic
from infra.stack import SERVICES, InfraSettings, down, up
from ingest.settings import DEV_WRITE_KEY
from ops.load import EventFactory, LoadOptions, SendLog, drive, send_figures, verify
from ops.pipeline import LocalPipeline, Ports
from ops.sample_images import sample_png, upload_image

CHAOS_PORTS = Ports(18_600, 18_601, 18_602, 18_603)
# stream_worker_kill: kill -9 of the stream processor, then a restart; loader_kill: the same for the
# warehouse process (loader and chdb owner); kafka_outage: the broker stopped for outage_s and started
# again; s3_outage_jobs: the object store stopped for outage_s while inference jobs run; collector_kill:
# kill -9 of the collector, then a restart, while clients resend with the same ids.
SCENARIOS = ("stream_worker_kill", "loader_kill", "kafka_outage", "s3_outage_jobs", "collector_kill")


@dataclass(frozen=True)
class ChaosOptions:
    rate: float = 1000.0
    batch_size: int = 50
    malformed_share: float = 0.05
    before_fault_s: float = 10.0
    after_fault_s: float = 10.0
    outage_s: float = 20.0
    jobs: int = 8
    settle_timeout_s: float = 300.0
    scenarios: tuple[str, ...] = SCENARIOS
    seed: int = 20261126
    ports: Ports = CHAOS_PORTS
    kafka_port: int = 39_092
    s3_port: int = 7_433
    keep_logs_dir: Path = field(default_factory=lambda: ServiceSettings().paths.data_dir / "chaos-logs")
    """Where the services' and the stack's logs are kept when a scenario fails."""


SHORT = ChaosOptions(rate=300.0, before_fault_s=5.0, after_fault_s=5.0, jobs=4)
"""The form ``make test`` runs: every scenario, at a rate two CI cores sustain while the suite runs."""


@dataclass
class ScenarioReport:
    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class ChaosRun:
    """The private stack and pipeline, and the faults that can be done to them."""

    def __init__(self, options: ChaosOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        kafka_address = f"127.0.0.1:{options.kafka_port}"
        s3_address = f"127.0.0.1:{options.s3_port}"
        self.infra = InfraSettings(
            kafka={"bootstrap_servers": kafka_address, "partitions": 2},
            s3={"endpoint": s3_address},
            stack={
                "dir": workdir / "stack",
                "kafka_controller_port": options.kafka_port + 1,
                "seaweedfs_master_port": options.s3_port + 1,
                "seaweedfs_volume_port": options.s3_port + 2,
                "seaweedfs_filer_port": options.s3_port + 3,
            },
        )
        self.pipeline = LocalPipeline(
            workdir / "pipeline",
            options.ports,
            self.infra.kafka,
            namespace=None,
            env={
                "FS_KAFKA__BOOTSTRAP_SERVERS": kafka_address,
                "FS_KAFKA__PARTITIONS": "2",
                "FS_S3__ENDPOINT": s3_address,
                # A restarted worker gets its partitions back once the dead one's session ends.
                "FS_STREAM__CONSUMER_SESSION_TIMEOUT_S": "10",
            },
        )

    def start(self) -> None:
        up(None, self.infra)
        self.pipeline.start()

    def stop(self) -> None:
        try:
            self.pipeline.stop()
        finally:
            down(None, self.infra)

    # --- faults; each returns figures about itself ---------------------------------------------------

    def kill_and_restart(self, service: str) -> dict[str, Any]:
        self.pipeline[service].kill()
        killed = time.monotonic()
        self.pipeline.restart(service)
        return {"restart_s": round(time.monotonic() - killed, 1)}

    def outage(self, service: str) -> dict[str, Any]:
        managed = SERVICES[service](self.infra)
        managed.down()
        stopped = time.monotonic()
        time.sleep(self.options.outage_s)
        managed.up()
        return {"down_s": round(time.monotonic() - stopped, 1)}


def _under_load(run: ChaosRun, scenario: str, seed: int, fault: Callable[[], dict[str, Any]]) -> ScenarioReport:
    options = run.options
    load = LoadOptions(
        rate=options.rate,
        duration_s=float("inf"),
        batch_size=options.batch_size,
        malformed_share=options.malformed_share,
        ingest_url=run.pipeline.ingest_url,
        request_timeout_s=15.0,
    )
    factory = EventFactory(seed, options.malformed_share)
    stop = threading.Event()
    outcome: dict[str, SendLog | BaseException] = {}

    def send() -> None:
        try:
            outcome["log"] = asyncio.run(drive(load, factory, stop))
        except BaseException as exc:  # reported below, in the scenario's problems
            outcome["log"] = exc

    sender = threading.Thread(target=send, name=f"load-{scenario}")
    sender.start()
    report = ScenarioReport(scenario)
    try:
        time.sleep(options.before_fault_s)
        report.figures["fault"] = fault()
        time.sleep(options.after_fault_s)
    finally:
        stop.set()
        sender.join()
    log = outcome["log"]
    if isinstance(log, BaseException):
        report.problems.append(f"load generator failed: {type(log).__name__}: {log}")
        return report
    report.figures.update(send_figures(load, log))
    warehouse = ApiReader(run.pipeline.warehouse_url, run.pipeline.warehouse_read_key)
    try:
        verdict = verify(warehouse, factory, log, options.settle_timeout_s)
    finally:
        warehouse.close()
    report.figures.update(verdict.figures())
    if log.not_accepted:
        report.problems.append(f"{len(log.not_accepted)} events never got a 202 (clients gave up)")
    for label, ids in (
        ("lost", verdict.lost),
        ("duplicated", verdict.duplicated),
        ("not sent but present", verdict.unexpected),
        ("malformed but not in the DLQ", verdict.malformed_missing),
        ("in the DLQ without a reason", verdict.malformed_without_reason),
    ):
        if ids:
            report.problems.append(f"{len(ids)} {label}, e.g. {ids[:3]}")
    misnamed = {
        event_id: (field_name, log.rejected[event_id])
        for event_id, field_name in factory.malformed.items()
        if event_id in log.rejected and log.rejected[event_id].split(".")[0] != field_name
    }
    if misnamed:
        report.problems.append(
            f"{len(misnamed)} refusals named another field than the broken one, e.g. {list(misnamed.items())[:3]}"
        )
    unexpected_refusals = {event_id for event_id in log.rejected if event_id not in factory.malformed}
    if unexpected_refusals:
        report.problems.append(
            f"{len(unexpected_refusals)} valid events refused, e.g. {sorted(unexpected_refusals)[:3]}"
        )
    return report


# --- the inference scenario ---------------------------------------------------------------------------


async def _upload_inputs(ingest_url: str, count: int, run_tag: str) -> list[tuple[str, dict[str, Any]]]:
    """One input per device: (anonymous_id, ticket); a job on it must come from the same device."""
    headers = {"X-Write-Key": DEV_WRITE_KEY}
    uploads = []
    async with httpx.AsyncClient(base_url=ingest_url, headers=headers, timeout=30) as client:
        for index in range(count):
            device = f"{run_tag}-jobs-{index}"
            uploads.append((device, await upload_image(client, sample_png(256, 192, seed=index), device)))
    return uploads


@dataclass
class SubmittedJobs:
    job_ids: list[str] = field(default_factory=list)
    unavailable: int = 0
    """503 answers (the store away) that were sent again."""


def _submit_jobs(ingest_url: str, uploads: list[tuple[str, dict[str, Any]]], retry_for_s: float = 0.0) -> SubmittedJobs:
    """Submit one restore job per upload. The collector checks each upload in the store at submit,
    so while the store is away it answers 503 with Retry-After: such a job is sent again after that
    wait, as a client would, for up to ``retry_for_s``."""
    submitted = SubmittedJobs()
    deadline = time.monotonic() + retry_for_s
    with httpx.Client(base_url=ingest_url, headers={"X-Write-Key": DEV_WRITE_KEY}, timeout=30) as client:
        for index, (device, ticket) in enumerate(uploads):
            inference_id, name = [(2, "enhance"), (3, "deblur")][index % 2]
            request = {
                "kind": "restore",
                "input_id": ticket["input_id"],
                "input_key": ticket["input_key"],
                "input_token": ticket["upload_token"],
                "anonymous_id": device,
                "inference_id": inference_id,
                "inference_name": name,
            }
            while True:
                response = client.post("/v1/jobs", json=request)
                if response.status_code != 503 or time.monotonic() >= deadline:
                    break
                submitted.unavailable += 1
                time.sleep(float(response.headers.get("retry-after", "1")))
            submitted.job_ids.append(response.raise_for_status().json()["job_id"])
    return submitted


def _job_statuses(ingest_url: str, job_ids: list[str], timeout_s: float) -> dict[str, str]:
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=ingest_url, headers={"X-Write-Key": DEV_WRITE_KEY}, timeout=10) as client:
        while time.monotonic() < deadline and len(statuses) < len(job_ids):
            for job_id in job_ids:
                if job_id in statuses:
                    continue
                try:
                    state = client.get(f"/v1/jobs/{job_id}").json()
                except httpx.HTTPError:
                    continue
                if state.get("status") not in (None, "queued", "running"):
                    statuses[job_id] = str(state["status"])
            time.sleep(0.5)
    return statuses


def _results_per_job(run: ChaosRun, job_ids: list[str], timeout_s: float = 30.0) -> Counter[str]:
    """How many results each job has on ``inference.results``, read from the beginning."""
    wanted = set(job_ids)
    counts: Counter[str] = Counter()
    consumer = make_consumer(run.infra.kafka, private_group("chaos-results"))
    consumer.subscribe([str(Topic.INFERENCE_RESULTS)])
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                # Everything seen and nothing new for a while: the topic has been read to its end.
                if wanted <= set(counts) and time.monotonic() - idle_since > 3:
                    break
                continue
            idle_since = time.monotonic()
            job_id = str(orjson.loads(message.value() or b"{}").get("job_id"))
            if job_id in wanted:
                counts[job_id] += 1
    finally:
        consumer.close()
    return counts


def _s3_outage_with_jobs(run: ChaosRun, seed: int) -> ScenarioReport:
    jobs = run.options.jobs
    uploads = asyncio.run(_upload_inputs(run.pipeline.ingest_url, jobs, f"chaos{seed}"))
    job_ids: list[str] = []

    def fault() -> dict[str, Any]:
        store = SERVICES["s3"](run.infra)
        # Half the jobs are queued just before the store goes away; the other half are sent while it
        # is away, answered 503 until it is back, and sent again until accepted.
        job_ids.extend(_submit_jobs(run.pipeline.ingest_url, uploads[: jobs // 2]).job_ids)
        store.down()
        stopped = time.monotonic()
        late: list[SubmittedJobs] = []
        sender = threading.Thread(
            target=lambda: late.append(
                _submit_jobs(run.pipeline.ingest_url, uploads[jobs // 2 :], run.options.settle_timeout_s)
            ),
            name="chaos-late-jobs",
        )
        sender.start()
        time.sleep(max(0.0, run.options.outage_s - (time.monotonic() - stopped)))
        store.up()
        down_s = round(time.monotonic() - stopped, 1)
        sender.join()
        if not late:
            raise RuntimeError("the jobs sent while the store was away were never accepted")
        job_ids.extend(late[0].job_ids)
        return {"down_s": down_s, "jobs": len(job_ids), "jobs_answered_503": late[0].unavailable}

    report = _under_load(run, "s3_outage_jobs", seed, fault)
    statuses = _job_statuses(run.pipeline.ingest_url, job_ids, run.options.settle_timeout_s)
    results = _results_per_job(run, job_ids)
    report.figures["jobs"] = {
        "submitted": len(job_ids),
        "statuses": dict(Counter(statuses.values())),
        # "1": n means every one of the n jobs has exactly one result.
        "results_per_job": {str(k): v for k, v in Counter(results[job_id] for job_id in job_ids).items()},
    }
    unfinished = [job_id for job_id in job_ids if job_id not in statuses]
    if unfinished:
        report.problems.append(f"{len(unfinished)} jobs without a final status, e.g. {unfinished[:3]}")
    wrong = {job_id: results[job_id] for job_id in job_ids if results[job_id] != 1}
    if wrong:
        report.problems.append(f"{len(wrong)} jobs without exactly one result: {dict(list(wrong.items())[:3])}")
    failed = [job_id for job_id, status in statuses.items() if status != "succeeded"]
    if failed:
        report.problems.append(f"{len(failed)} jobs failed although the store came back, e.g. {failed[:3]}")
    return report


# --- running ------------------------------------------------------------------------------------------


def run_chaos(
    options: ChaosOptions, on_report: Callable[[ScenarioReport], None] = lambda _: None
) -> list[ScenarioReport]:
    unknown = set(options.scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; choose from {list(SCENARIOS)}")
    workdir = Path(tempfile.mkdtemp(prefix="funnelstream-chaos-"))
    run = ChaosRun(options, workdir)
    reports: list[ScenarioReport] = []
    faults: dict[str, Callable[[], dict[str, Any]]] = {
        "stream_worker_kill": lambda: run.kill_and_restart("stream"),
        "loader_kill": lambda: run.kill_and_restart("warehouse"),
        "kafka_outage": lambda: run.outage("kafka"),
        "collector_kill": lambda: run.kill_and_restart("ingest"),
    }
    try:
        run.start()
        for number, scenario in enumerate(options.scenarios):
            seed = options.seed * 10 + number
            if scenario == "s3_outage_jobs":
                report = _s3_outage_with_jobs(run, seed)
            else:
                report = _under_load(run, scenario, seed, faults[scenario])
            reports.append(report)
            on_report(report)
    finally:
        run.stop()
        if not all(report.ok for report in reports) or len(reports) < len(options.scenarios):
            # What the services said is the first thing to read when a scenario failed.
            kept = options.keep_logs_dir / time.strftime("%Y%m%dT%H%M%S")
            shutil.copytree(workdir / "pipeline" / "logs", kept / "services", dirs_exist_ok=True)
            for log in (workdir / "stack").glob("*/*.log"):
                shutil.copy2(log, kept / log.name)
        shutil.rmtree(workdir, ignore_errors=True)
    return reports
