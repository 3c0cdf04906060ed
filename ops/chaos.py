"""``make chaos``: faults under load, then an exact count of what arrived.

A private stack runs the four services; in each scenario (``stream_worker_kill``, ``loader_kill``,
``kafka_outage``, ``s3_outage_jobs``, ``collector_kill`` on one broker; ``broker_kill``,
``broker_rolling_restart``, ``min_isr_lost`` on a stack of its own with three KRaft nodes, replication
3 and ``min.insync.replicas`` 2) realistic traffic with malformed events flows while one fault
happens. Checked by ``event_id`` in ClickHouse: every event that got a 202 is there exactly once, none
that was not sent, every malformed one is in ``dlq_events`` with its reason, and every job has exactly
one result on ``inference.results``. The broker scenarios also check that no service was restarted,
that jobs submitted after the fault finish, and, from a prober's timestamped single-event requests,
when the collector answered 202 and 503 against when the cluster had in-sync leaders.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from clickhouse.client import ApiReader
from funnelstream.blocks import partition_for
from funnelstream.kafka import make_admin, make_consumer, private_group, serve_logs
from funnelstream.settings import ServiceSettings
from funnelstream.topics import Topic
from infra.broker import KafkaBroker, KafkaService, client_env, cluster_kafka_config
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
SINGLE_BROKER_SCENARIOS = ("stream_worker_kill", "loader_kill", "kafka_outage", "s3_outage_jobs", "collector_kill")
# On three KRaft nodes (replication 3, min.insync.replicas 2). broker_kill: kill -9 of the node leading
# the most partitions of events.raw, a restart once leadership has moved; broker_rolling_restart: each
# node stopped (controlled shutdown) and started in turn, the next only once every replica is back in
# sync; min_isr_lost: two nodes stopped for outage_s (503 with Retry-After, never a 202), then both back.
BROKER_SCENARIOS = ("broker_kill", "broker_rolling_restart", "min_isr_lost")
SCENARIOS = SINGLE_BROKER_SCENARIOS + BROKER_SCENARIOS


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
    cluster_kafka_port: int = 39_192
    """Node 1 of the broker scenarios' cluster; nodes 2 and 3 on the next ports, controllers 100 above."""
    broker_down_s: float = 10.0
    """How long a killed broker stays away once leadership has moved off it."""
    probe_interval_s: float = 0.05
    """The prober's pace: one single-event request this often, each on its own."""
    s3_port: int = 7_433
    keep_logs_dir: Path = field(default_factory=lambda: ServiceSettings().paths.data_dir / "chaos-logs")
    """Where the services' and the stack's logs are kept when a scenario fails."""
    keep_logs: bool = False
    """Keep them even when every scenario passed (to read how the services lived through a fault)."""


SHORT = ChaosOptions(rate=300.0, before_fault_s=5.0, after_fault_s=5.0, jobs=4, scenarios=SINGLE_BROKER_SCENARIOS)
"""The form ``make test`` runs: every single-broker scenario, at a rate two CI cores sustain while the
suite runs."""

SHORT_BROKER_KILL = ChaosOptions(
    rate=200.0,
    before_fault_s=4.0,
    after_fault_s=4.0,
    broker_down_s=2.0,
    jobs=2,
    probe_interval_s=0.1,
    scenarios=("broker_kill",),
)
"""The broker scenario ``make test`` runs: three JVMs and four services share two CI cores, so the
load is light and the killed broker is back soon after leadership has moved."""


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

    def __init__(self, options: ChaosOptions, workdir: Path, brokers: int = 1) -> None:
        self.options = options
        self.workdir = workdir
        self.brokers = brokers
        port = options.kafka_port if brokers == 1 else options.cluster_kafka_port
        # The cluster's events topic has a partition per node, so each node leads some of it.
        partitions = 2 if brokers == 1 else brokers
        s3_address = f"127.0.0.1:{options.s3_port}"
        self.infra = InfraSettings(
            kafka={"bootstrap_servers": f"127.0.0.1:{port}", "partitions": partitions},
            s3={"endpoint": s3_address},
            stack={
                "dir": workdir / "stack",
                "kafka_brokers": brokers,
                # Clear of the client ports port .. port + brokers - 1.
                "kafka_controller_port": port + (1 if brokers == 1 else 100),
                "seaweedfs_master_port": options.s3_port + 1,
                "seaweedfs_volume_port": options.s3_port + 2,
                "seaweedfs_filer_port": options.s3_port + 3,
            },
        )
        self.kafka_config = cluster_kafka_config(self.infra)
        """What a client of this stack uses: every node to bootstrap from, the cluster's replication."""
        self.pipeline = LocalPipeline(
            workdir / "pipeline",
            options.ports,
            self.kafka_config,
            namespace=None,
            env={
                **client_env(self.infra),
                "FS_KAFKA__PARTITIONS": str(partitions),
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
            if self.brokers > 1:
                # The private cluster's data goes with its folder: no controlled shutdown to wait for,
                # which the last node, alone without a quorum, could not finish anyway.
                for broker in KafkaService(self.infra).brokers:
                    broker.kill()
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
    consumer = make_consumer(run.kafka_config, private_group("chaos-results"))
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
    _check_jobs(run, report, job_ids, "although the store came back")
    return report


def _check_jobs(run: ChaosRun, report: ScenarioReport, job_ids: list[str], failed_because: str) -> None:
    """Every job of ``job_ids`` ends succeeded with exactly one result; figures and problems into ``report``."""
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
        report.problems.append(f"{len(failed)} jobs failed {failed_because}, e.g. {failed[:3]}")


# --- the broker scenarios -----------------------------------------------------------------------------

EVENTS_TOPIC = str(Topic.EVENTS_RAW)
ANSWER_SLACK_S = 2.0
"""How long after a partition had no in-sync leader a 503 still counts as caused by it: the
collector's producer learns the new leader from a metadata refresh, and a request that waited on
the old one is answered at its delivery deadline."""


class ClusterWatch:
    """Samples every partition's leader and in-sync replicas a few times a second, on a thread.

    A partition is *writable* at a sample when its leader is a node not known to be down, at least
    ``min.insync.replicas`` replicas are in sync, and none of them is down: an acks=all write waits
    for every in-sync replica, so a dead follower still in the set holds every write back until the
    controller fences its node (``broker.session.timeout.ms``). The faults say which nodes are down
    (a killed node stays leader and in sync in the metadata until it is fenced)."""

    def __init__(self, run: ChaosRun, interval_s: float = 0.2) -> None:
        self.admin = make_admin(run.kafka_config)
        self.min_insync = run.kafka_config.min_insync_replicas
        self.interval_s = interval_s
        self.down: set[int] = set()
        self.samples: list[tuple[float, dict[tuple[str, int], tuple[int, tuple[int, ...]]], frozenset[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-cluster-watch", daemon=True)

    def __enter__(self) -> ClusterWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            down = frozenset(self.down)
            try:
                metadata = self.admin.list_topics(timeout=1.0)
            except Exception:  # no node answered: nothing is known for this sample
                metadata = None
            # A node that is down refuses connections: those lines go to logging, not the console.
            serve_logs(self.admin)
            if metadata is not None:
                state = {
                    (name, number): (part.leader, tuple(part.isrs))
                    for name, topic in metadata.topics.items()
                    for number, part in topic.partitions.items()
                }
                self.samples.append((started, state, down))
            self._stop.wait(max(0.0, self.interval_s - (time.time() - started)))

    def writable(self, leader: int, in_sync: tuple[int, ...], down: frozenset[int]) -> bool:
        return leader >= 0 and not down & {leader, *in_sync} and len(in_sync) >= self.min_insync

    def leaders(self, topic: str = EVENTS_TOPIC) -> dict[int, int]:
        """The topic's partitions → leader, from the latest sample."""
        state = self.latest()
        return {number: leader for (name, number), (leader, _) in state.items() if name == topic}

    def latest(self, timeout_s: float = 10.0) -> dict[tuple[str, int], tuple[int, tuple[int, ...]]]:
        count = len(self.samples)
        deadline = time.monotonic() + timeout_s
        while len(self.samples) == count and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.samples:
            raise RuntimeError("the cluster answered no metadata")
        return self.samples[-1][1]

    def wait(
        self, done: Callable[[dict[tuple[str, int], tuple[int, tuple[int, ...]]]], bool], timeout_s: float
    ) -> float:
        """Wait for a fresh sample that satisfies ``done``; returns the sample's wall time."""
        deadline = time.monotonic() + timeout_s
        seen = len(self.samples)
        while time.monotonic() < deadline:
            if len(self.samples) > seen:
                seen = len(self.samples)
                at, state, _ = self.samples[-1]
                if done(state):
                    return at
            time.sleep(0.05)
        raise TimeoutError(f"the cluster did not reach the awaited state within {timeout_s:.0f}s")

    def events_led_elsewhere(
        self, nodes: set[int]
    ) -> Callable[[dict[tuple[str, int], tuple[int, tuple[int, ...]]]], bool]:
        def done(state: dict[tuple[str, int], tuple[int, tuple[int, ...]]]) -> bool:
            leaders = [leader for (name, _), (leader, _) in state.items() if name == EVENTS_TOPIC]
            return bool(leaders) and all(leader >= 0 and leader not in nodes for leader in leaders)

        return done

    @staticmethod
    def all_in_sync(replication: int) -> Callable[[dict[tuple[str, int], tuple[int, tuple[int, ...]]]], bool]:
        def done(state: dict[tuple[str, int], tuple[int, tuple[int, ...]]]) -> bool:
            return bool(state) and all(len(in_sync) >= replication for _, in_sync in state.values())

        return done

    def unwritable_at(self, topic: str, partition: int) -> list[float]:
        """Wall times of the samples at which the partition could not take an acks=all write."""
        key = (topic, partition)
        return [
            at
            for at, state, down in self.samples
            if key not in state or not self.writable(state[key][0], state[key][1], down)
        ]


@dataclass(frozen=True)
class ProbeAnswer:
    sent: float
    """Wall-clock seconds when the request was sent, and when its answer came."""
    answered: float
    status: str
    retry_after: str | None
    partition: int


class Prober:
    """One valid event per request, one request every ``interval_s`` whatever the answers take (no
    retries), each answer kept with its send and answer times and the partition its event goes to:
    the sender-side timeline the broker scenarios are judged on. Its events are checked like the load's."""

    def __init__(self, run: ChaosRun, seed: int) -> None:
        self.url = run.pipeline.ingest_url
        self.interval_s = run.options.probe_interval_s
        self.partitions = run.kafka_config.partitions
        self.factory = EventFactory(seed)
        self.factory.prefill(1)
        self.log = SendLog()
        self.answers: list[ProbeAnswer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._drive()), name="chaos-prober")

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    async def _drive(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        # A connection each, never reused: a request the collector holds until its delivery deadline
        # must not delay the next probe in the client's pool (the timeline would measure the pool),
        # and a kept-alive connection the server closes as it is reused would read as an error.
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0, limits=limits) as client:
            started = time.monotonic()
            index = 0
            while not self._stop.is_set():
                task = asyncio.create_task(self._send(client, self.factory.batch(1)[0]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.log.sent_events += 1
                index += 1
                await asyncio.sleep(max(0.0, started + index * self.interval_s - time.monotonic()))
            if tasks:
                await asyncio.gather(*tasks)

    async def _send(self, client: httpx.AsyncClient, event: dict[str, Any]) -> None:
        event_id = str(event["event_id"])
        partition = partition_for(str(event["anonymous_id"]).encode(), self.partitions)
        sent = time.time()
        body = orjson.dumps({"batch": [{**event, "sent_at": datetime.now(UTC).isoformat(timespec="milliseconds")}]})
        try:
            response = await client.post(
                "/v1/batch", content=body, headers={"X-Write-Key": DEV_WRITE_KEY, "Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            status, retry_after = type(exc).__name__, None
        else:
            status, retry_after = str(response.status_code), response.headers.get("Retry-After")
        answered = time.time()
        self.log.statuses[status] += 1
        if status == "202":
            self.log.accepted_at_ms[event_id] = answered * 1000
        else:
            self.log.not_accepted.add(event_id)
        self.answers.append(ProbeAnswer(sent, answered, status, retry_after, partition))

    def first_202(self, after: float, partitions: set[int] | None = None) -> float | None:
        """Seconds from ``after`` to the first 202 of a request sent after it (to one of ``partitions``)."""
        times = [
            answer.answered - after
            for answer in self.answers
            if answer.status == "202"
            and answer.sent >= after
            and (partitions is None or answer.partition in partitions)
        ]
        return round(min(times), 2) if times else None

    def longest_without_202(self, partitions: set[int]) -> float:
        """The longest wait, in seconds, between 202s answered for requests to ``partitions``."""
        answered = sorted(a.answered for a in self.answers if a.status == "202" and a.partition in partitions)
        gaps = [later - earlier for earlier, later in itertools.pairwise(answered)]
        return round(max(gaps, default=0.0), 2)


@dataclass
class BrokerFault:
    """What a broker fault hands to its scenario's checks."""

    figures: dict[str, Any]
    job_ids: list[str]
    forbidden_202: tuple[float, float] | None = None
    """(from, to) wall times during which no 202 may be answered: fewer than min.insync nodes alive."""
    from_probes: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Figures read from the prober's answers once the load has ended and every answer is in."""


def _pipeline_pids(run: ChaosRun) -> dict[str, int | None]:
    return {
        name: service.process.pid if service.running and service.process is not None else None
        for name, service in run.pipeline.services.items()
    }


def _since(start: float, at: float) -> float:
    return round(at - start, 2)


def _leading_most(watch: ClusterWatch, kafka: KafkaService, count: int) -> list[KafkaBroker]:
    """The ``count`` nodes leading the most partitions of events.raw (node id breaks ties)."""
    led = Counter(watch.leaders().values())
    ranked = sorted(kafka.brokers, key=lambda broker: (-led[broker.node_id], broker.node_id))
    return ranked[:count]


def _submit_after_fault(run: ChaosRun, uploads: list[tuple[str, dict[str, Any]]]) -> list[str]:
    # Jobs go through the collector, the inference service and back through the collector's results
    # follower: each of them has to be making progress after the fault for these to finish.
    return _submit_jobs(run.pipeline.ingest_url, uploads, run.options.settle_timeout_s).job_ids


def _broker_kill(
    run: ChaosRun, watch: ClusterWatch, prober: Prober, uploads: list[tuple[str, dict[str, Any]]]
) -> BrokerFault:
    kafka = KafkaService(run.infra)
    timeout = run.options.settle_timeout_s
    (victim,) = _leading_most(watch, kafka, 1)
    led = {number for number, leader in watch.leaders().items() if leader == victim.node_id}
    watch.down.add(victim.node_id)
    killed = time.time()
    victim.kill()
    moved = watch.wait(watch.events_led_elsewhere({victim.node_id}), timeout)
    time.sleep(run.options.broker_down_s)
    restarted = time.time()
    victim.up()
    watch.down.discard(victim.node_id)
    registered = time.time()
    in_sync = watch.wait(watch.all_in_sync(run.kafka_config.replication_factor), timeout)
    figures = {
        "killed_node": victim.node_id,
        "partitions_it_led": sorted(led),
        "leader_moved_s": _since(killed, moved),
        "down_s": _since(killed, restarted),
        "restart_s": _since(restarted, registered),
        "back_in_sync_s": _since(restarted, in_sync),
    }
    later = {
        "kill_to_first_202_on_new_leader_s": lambda: prober.first_202(killed, led),
        "longest_without_202_on_its_partitions_s": lambda: prober.longest_without_202(led),
    }
    return BrokerFault(figures, _submit_after_fault(run, uploads), from_probes=later)


def _broker_rolling_restart(
    run: ChaosRun, watch: ClusterWatch, prober: Prober, uploads: list[tuple[str, dict[str, Any]]]
) -> BrokerFault:
    kafka = KafkaService(run.infra)
    timeout = run.options.settle_timeout_s
    steps = []
    later: dict[str, Callable[[], Any]] = {}
    for broker in kafka.brokers:
        led = {number for number, leader in watch.leaders().items() if leader == broker.node_id}
        stopping = time.time()
        watch.down.add(broker.node_id)
        broker.down()
        stopped = time.time()
        broker.up()
        watch.down.discard(broker.node_id)
        registered = time.time()
        # The next node goes only once every replica is back in sync, as an operator's rolling
        # restart does: otherwise two nodes would be out of the in-sync set at once.
        in_sync = watch.wait(watch.all_in_sync(run.kafka_config.replication_factor), timeout)
        steps.append(
            {
                "node": broker.node_id,
                "partitions_it_led": sorted(led),
                "stop_s": _since(stopping, stopped),
                "restart_s": _since(stopped, registered),
                "back_in_sync_s": _since(stopped, in_sync),
            }
        )
        if led:
            later[f"node_{broker.node_id}_stop_to_first_202_on_its_partitions_s"] = functools.partial(
                prober.first_202, stopping, led
            )
    return BrokerFault({"steps": steps}, _submit_after_fault(run, uploads), from_probes=later)


def _min_isr_lost(
    run: ChaosRun, watch: ClusterWatch, prober: Prober, uploads: list[tuple[str, dict[str, Any]]]
) -> BrokerFault:
    kafka = KafkaService(run.infra)
    timeout = run.options.settle_timeout_s
    victims = _leading_most(watch, kafka, 2)
    stopping = time.time()
    for victim in victims:
        watch.down.add(victim.node_id)
        victim.down()
    alone = time.time()
    time.sleep(run.options.outage_s)
    returning = time.time()
    # Neither node can register alone: the quorum needs two of three, so both start before either is awaited.
    for victim in victims:
        victim.start()
    for victim in victims:
        victim.up()
        watch.down.discard(victim.node_id)
    registered = time.time()
    in_sync = watch.wait(watch.all_in_sync(run.kafka_config.replication_factor), timeout)
    figures = {
        "stopped_nodes": [victim.node_id for victim in victims],
        "stop_s": _since(stopping, alone),
        "alone_s": _since(alone, returning),
        "restart_s": _since(returning, registered),
        "back_in_sync_s": _since(returning, in_sync),
    }
    later = {
        "probe_answers_while_alone": lambda: dict(
            Counter(answer.status for answer in prober.answers if alone <= answer.sent and answer.answered <= returning)
        ),
        "return_to_first_202_s": lambda: prober.first_202(returning),
    }
    return BrokerFault(figures, _submit_after_fault(run, uploads), forbidden_202=(alone, returning), from_probes=later)


BROKER_FAULTS: dict[str, Callable[[ChaosRun, ClusterWatch, Prober, list[tuple[str, dict[str, Any]]]], BrokerFault]] = {
    "broker_kill": _broker_kill,
    "broker_rolling_restart": _broker_rolling_restart,
    "min_isr_lost": _min_isr_lost,
}


def _broker_scenario(run: ChaosRun, scenario: str, seed: int) -> ScenarioReport:
    uploads = asyncio.run(_upload_inputs(run.pipeline.ingest_url, run.options.jobs, f"chaos{seed}"))
    pids = _pipeline_pids(run)
    faults: list[BrokerFault] = []
    # The prober's events are a run of their own, told apart from the load's by their prefix.
    with ClusterWatch(run) as watch, Prober(run, seed + 500_000_000_000) as prober:

        def fault() -> dict[str, Any]:
            watch.latest()
            faults.append(BROKER_FAULTS[scenario](run, watch, prober, uploads))
            return faults[0].figures

        report = _under_load(run, scenario, seed, fault)
    if not faults:
        return report
    report.figures["fault"].update({name: figure() for name, figure in faults[0].from_probes.items()})
    _judge_answers(run, report, watch, prober, faults[0])
    after = _pipeline_pids(run)
    if after != pids:
        report.problems.append(f"services died or were restarted: pids {pids} -> {after}")
    _check_jobs(run, report, faults[0].job_ids, "after the brokers came back")
    warehouse = ApiReader(run.pipeline.warehouse_url, run.pipeline.warehouse_read_key)
    try:
        probed = verify(warehouse, prober.factory, prober.log, run.options.settle_timeout_s)
    finally:
        warehouse.close()
    report.figures["probe"] = {
        "sent": prober.log.sent_events,
        **{k: v for k, v in probed.figures().items() if k in ("accepted", "lost", "duplicated")},
    }
    if probed.lost or probed.duplicated or probed.unexpected:
        report.problems.append(
            f"probe events: {len(probed.lost)} lost, {len(probed.duplicated)} duplicated, "
            f"{len(probed.unexpected)} unexpected"
        )
    return report


def _judge_answers(
    run: ChaosRun, report: ScenarioReport, watch: ClusterWatch, prober: Prober, fault: BrokerFault
) -> None:
    """The collector's answers against the cluster's state: 503 (with Retry-After) only while the
    event's partition could not take an acks=all write (see :class:`ClusterWatch`), no other error,
    and no 202 while too few nodes lived."""
    answers = report.figures.get("answers", {})
    probes = prober.answers
    report.figures["answers_503"] = int(answers.get("503", 0))
    report.figures["probe_answers"] = dict(Counter(answer.status for answer in probes))
    # How long the collector held a request it then refused: its delivery deadline, if all is well.
    waits = sorted(a.answered - a.sent for a in probes if a.status == "503")
    if waits:
        report.figures["probe_503_wait_s"] = {"p50": round(waits[len(waits) // 2], 2), "max": round(waits[-1], 2)}
    # The load's client keeps connections alive as long as the collector does (5 s), so after an
    # outage's backlog one it reuses can be closed under it: a transport error there is the client's
    # (the batch is sent again and counted), and the figures show it. The prober opens a connection
    # per request, so any transport error of its own is the collector's.
    errors = {status: n for status, n in answers.items() if status.isdigit() and status not in ("202", "503")}
    errors.update(Counter(f"probe {a.status}" for a in probes if a.status not in ("202", "503")))
    if errors:
        report.problems.append(f"answers other than 202 and 503: {errors}")
    without_header = [a for a in probes if a.status == "503" and not a.retry_after]
    if without_header:
        report.problems.append(f"{len(without_header)} probe 503s without Retry-After")
    unwritable = {p: watch.unwritable_at(EVENTS_TOPIC, p) for p in range(run.kafka_config.partitions)}
    unexplained = [
        a
        for a in probes
        if a.status == "503" and not any(a.sent - ANSWER_SLACK_S <= at <= a.answered for at in unwritable[a.partition])
    ]
    report.figures["probe_503_while_writable"] = len(unexplained)
    if unexplained:
        first = min(unexplained, key=lambda a: a.sent)
        report.problems.append(
            f"{len(unexplained)} probe 503s while their partition was writable, e.g. partition "
            f"{first.partition} sent at {first.sent:.2f}"
        )
    if fault.forbidden_202 is not None:
        start, end = fault.forbidden_202
        acked = [a for a in probes if a.status == "202" and a.sent >= start and a.answered <= end]
        report.figures["probe_202_while_under_min_insync"] = len(acked)
        if acked:
            report.problems.append(f"{len(acked)} probe events got a 202 while fewer than min.insync nodes were up")
        refused = [a for a in probes if a.status == "503" and a.sent >= start and a.answered <= end]
        if not refused:
            report.problems.append("no probe was answered 503 while fewer than min.insync nodes were up")


# --- running ------------------------------------------------------------------------------------------


def run_chaos(
    options: ChaosOptions, on_report: Callable[[ScenarioReport], None] = lambda _: None
) -> list[ScenarioReport]:
    """The single-broker scenarios chosen on one private stack, then the broker scenarios chosen on a
    private three-node cluster."""
    unknown = set(options.scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; choose from {list(SCENARIOS)}")
    seeds = {scenario: options.seed * 10 + number for number, scenario in enumerate(options.scenarios)}
    reports: list[ScenarioReport] = []
    for brokers, group in ((1, SINGLE_BROKER_SCENARIOS), (3, BROKER_SCENARIOS)):
        chosen = [scenario for scenario in options.scenarios if scenario in group]
        if chosen:
            reports += _run_on_stack(options, brokers, chosen, seeds, on_report)
    return reports


def _run_on_stack(
    options: ChaosOptions,
    brokers: int,
    scenarios: list[str],
    seeds: dict[str, int],
    on_report: Callable[[ScenarioReport], None],
) -> list[ScenarioReport]:
    workdir = Path(tempfile.mkdtemp(prefix="funnelstream-chaos-"))
    run = ChaosRun(options, workdir, brokers)
    reports: list[ScenarioReport] = []
    faults: dict[str, Callable[[], dict[str, Any]]] = {
        "stream_worker_kill": lambda: run.kill_and_restart("stream"),
        "loader_kill": lambda: run.kill_and_restart("warehouse"),
        "kafka_outage": lambda: run.outage("kafka"),
        "collector_kill": lambda: run.kill_and_restart("ingest"),
    }
    try:
        run.start()
        for scenario in scenarios:
            seed = seeds[scenario]
            if scenario == "s3_outage_jobs":
                report = _s3_outage_with_jobs(run, seed)
            elif scenario in BROKER_FAULTS:
                report = _broker_scenario(run, scenario, seed)
            else:
                report = _under_load(run, scenario, seed, faults[scenario])
            report.figures["brokers"] = brokers
            reports.append(report)
            on_report(report)
    finally:
        run.stop()
        failed = not all(report.ok for report in reports) or len(reports) < len(scenarios)
        if failed or options.keep_logs:
            # What the services said is the first thing to read when a scenario failed.
            kept = options.keep_logs_dir / time.strftime("%Y%m%dT%H%M%S")
            kept.mkdir(parents=True, exist_ok=True)
            if (workdir / "pipeline" / "logs").is_dir():
                shutil.copytree(workdir / "pipeline" / "logs", kept / "services", dirs_exist_ok=True)
            for log in (workdir / "stack").glob("*/*.log"):
                shutil.copy2(log, kept / log.name)
        shutil.rmtree(workdir, ignore_errors=True)
    return reports
