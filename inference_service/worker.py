"""The Kafka side of the service: consume jobs, run N at a time, publish, commit in order, drain on stop.

Offsets are committed only up to the lowest job still in flight on each partition, after that job's
result, event and (on failure) dead letter are acknowledged by the broker. A crash therefore redelivers
jobs, and a redelivered job overwrites the same objects and re-emits the same event ids.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from funnelstream.contract import InferenceJob
from funnelstream.errors import TransientError
from funnelstream.kafka import DeliveryReport, commit, flush_or_raise, make_consumer, make_producer, produce
from inference_service import metrics
from inference_service.errors import InferenceError, JobAbandoned, JobFailed, JobTimedOut
from inference_service.pipeline import JobProcessor, OutMessage, Source, Timings, decode_job
from inference_service.settings import InferenceSettings

log = logging.getLogger(__name__)


class WorkerStopped(InferenceError):
    """The worker stopped because a result could not be published; its job will be redelivered."""


_DELIVERY_LOCK = threading.Lock()


class _LockedReport(DeliveryReport):
    """Delivery callbacks may be served by any thread that polls the shared producer."""

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        with _DELIVERY_LOCK:
            super().__call__(err, msg)


class TaskState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PUBLISHING = "publishing"
    DONE = "done"
    TIMED_OUT = "timed_out"


@dataclass
class Task:
    source: Source
    state: TaskState = TaskState.QUEUED
    job: InferenceJob | None = None
    timings: Timings = field(default_factory=Timings)
    """Started when the message is taken off the topic: pickup, not the moment a pool thread is free."""
    started_at: float | None = None
    future: Future[None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, to: TaskState) -> bool:
        """Move from RUNNING to ``to``; only one of the worker and the timeout can win."""
        with self.lock:
            if self.state is not TaskState.RUNNING:
                return False
            self.state = to
            return True


@dataclass(frozen=True, slots=True)
class JobRecord:
    """What a finished job reports to observers (metrics, the benchmark)."""

    job_id: str | None
    status: str
    timings: Timings
    model: str | None


class OffsetTracker:
    """Per partition: the next offset safe to commit is the lowest one still in flight."""

    def __init__(self) -> None:
        self.in_flight: dict[int, set[int]] = defaultdict(set)
        self.next_offset: dict[int, int] = {}
        self.committed: dict[int, int] = {}

    def started(self, partition: int, offset: int) -> None:
        self.in_flight[partition].add(offset)
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset + 1)

    def finished(self, partition: int, offset: int) -> None:
        self.in_flight[partition].discard(offset)

    def committable(self) -> dict[int, int]:
        ready = {}
        for partition, next_offset in self.next_offset.items():
            pending = self.in_flight[partition]
            offset = min(pending) if pending else next_offset
            if offset > self.committed.get(partition, -1):
                ready[partition] = offset
        return ready

    def mark_committed(self, offsets: dict[int, int]) -> None:
        self.committed.update(offsets)

    def busy(self, partitions: set[int] | None = None) -> bool:
        return any(offsets for p, offsets in self.in_flight.items() if partitions is None or p in partitions)

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.in_flight.pop(partition, None)
            self.next_offset.pop(partition, None)
            self.committed.pop(partition, None)


class InferenceWorker:
    def __init__(
        self,
        settings: InferenceSettings,
        processor: JobProcessor,
        on_job_done: Callable[[JobRecord], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.inference
        self.processor = processor
        self.on_job_done = on_job_done
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.fatal: BaseException | None = None
        self.tracker = OffsetTracker()
        self.commit_failures = 0
        """Commits that failed in a way a later one covers; any other commit failure stops the worker."""
        self.tasks: dict[tuple[int, int], Task] = {}
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._abandoned: set[Future[None]] = set()
        self._slot_freed = threading.Event()
        self._finished: list[Task] = []
        self._finished_lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------

    def _setup(self) -> None:
        kafka = self.settings.kafka
        # A job emits two or three messages and someone waits for them: no batching delay.
        self._producer = make_producer(kafka, **{"linger.ms": 0})
        self._consumer = make_consumer(
            kafka,
            self.config.consumer_group,
            # A job may take minutes; the consumer stays in the group while the poll loop runs.
            **{"max.poll.interval.ms": max(300_000, int(self.config.job_timeout_s * 2000))},
        )
        self._consumer.subscribe([self.config.jobs_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._executor = ThreadPoolExecutor(self.config.max_in_flight, thread_name_prefix="inference-job")

    def stop(self) -> None:
        """Drain: stop taking jobs, finish those in flight, publish, commit, close."""
        self.stopping.set()

    def run(self) -> None:
        """The poll loop; returns after :meth:`stop` once drained, or raises :class:`WorkerStopped`
        (a publish failed) or :class:`~funnelstream.kafka.CommitFailed` (no later commit would succeed)."""
        self._setup()
        assert self._consumer is not None
        self.ready.set()
        log.info("inference worker started", extra={"topic": self.config.jobs_topic})
        try:
            while not self.stopping.is_set() and self.fatal is None:
                self._settle()
                free = self.config.max_in_flight - self._busy_slots()
                if free <= 0:
                    # Not polling while full is safe: max.poll.interval.ms covers the longest job, and
                    # pausing partitions instead would make librdkafka drop and refetch its buffer.
                    self._slot_freed.wait(0.05)
                    self._slot_freed.clear()
                    continue
                for message in self._consumer.consume(num_messages=free, timeout=0.05):
                    self._accept(message)
            self._drain(None, time.monotonic() + self.config.drain_timeout_s)
        finally:
            self.ready.clear()
            self._close()
        if self.fatal is not None:
            raise WorkerStopped(f"stopped after a publish failure: {self.fatal}") from self.fatal

    def _close(self) -> None:
        if self._executor is not None:
            # Jobs still running past the drain deadline are abandoned; their offsets were not committed.
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            remaining = self._producer.flush(self.config.produce_timeout_s)
            if remaining:
                log.error("producer closed with unacknowledged messages", extra={"count": remaining})

    # --- the loop ----------------------------------------------------------------------------------

    def _accept(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            log.warning("consumer error", extra={"error": error.str()})
            return
        partition, offset = message.partition() or 0, message.offset() or 0
        task = Task(Source(message.topic() or "", partition, offset, message.key(), message.value() or b""))
        self.tracker.started(partition, offset)
        self.tasks[(partition, offset)] = task
        metrics.IN_FLIGHT.inc()
        assert self._executor is not None
        task.future = self._executor.submit(self._execute, task)

    def _busy_slots(self) -> int:
        """Pool threads taken: running jobs, and timed-out ones whose model call has not returned yet."""
        self._abandoned = {future for future in self._abandoned if not future.done()}
        running = sum(1 for task in self.tasks.values() if task.future is not None and not task.future.done())
        return running + len(self._abandoned)

    def _settle(self) -> None:
        """Reap finished jobs, fail those past their timeout, commit what is safe."""
        with self._finished_lock:
            finished, self._finished = self._finished, []
        for task in finished:
            self._release(task)
        deadline = time.monotonic() - self.config.job_timeout_s
        for task in list(self.tasks.values()):
            if task.started_at is not None and task.started_at < deadline and task.claim(TaskState.TIMED_OUT):
                self._time_out(task)
        self._commit()

    def _release(self, task: Task) -> None:
        key = (task.source.partition, task.source.offset)
        if self.tasks.pop(key, None) is not None:
            self.tracker.finished(*key)
            metrics.IN_FLIGHT.dec()

    def _commit(self) -> None:
        ready = self.tracker.committable()
        if not ready or self._consumer is None:
            return
        offsets = [TopicPartition(self.config.jobs_topic, p, o) for p, o in ready.items()]
        if not commit(self._consumer, offsets):
            self.commit_failures += 1
            return
        self.tracker.mark_committed(ready)

    def _drain(self, partitions: set[int] | None, deadline: float) -> None:
        while self.tracker.busy(partitions) and time.monotonic() < deadline and self.fatal is None:
            self._settle()
            time.sleep(0.01)
        self._settle()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": [tp.partition for tp in partitions]})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish and commit what we hold before another member takes these partitions."""
        revoked = {tp.partition for tp in partitions}
        self._drain(revoked, time.monotonic() + self.config.drain_timeout_s)
        for key in [key for key in self.tasks if key[0] in revoked]:
            # Still running after the drain deadline: its offset stays uncommitted, the job is redone.
            task = self.tasks.pop(key)
            task.claim(TaskState.TIMED_OUT)
            if task.future is not None:
                self._abandoned.add(task.future)
            metrics.IN_FLIGHT.dec()
        self.tracker.forget(revoked)

    # --- one job, on a pool thread -----------------------------------------------------------------

    def _execute(self, task: Task) -> None:
        try:
            self._execute_job(task)
        finally:
            self._slot_freed.set()

    def _execute_job(self, task: Task) -> None:
        timings = task.timings
        with task.lock:
            task.started_at = time.monotonic()
            task.state = TaskState.RUNNING
        messages: list[OutMessage]
        model: tuple[str, str] | None = None
        status = "succeeded"
        try:
            task.job = decode_job(task.source.payload)
            model = self.processor.model_of(task.job)
            completed = self.processor.run(task.job, timings, lambda: task.state is TaskState.TIMED_OUT)
            messages = self.processor.success_messages(task.job, completed, timings)
        except JobAbandoned:
            return  # the timeout (or a revoke) already reported or released it
        except JobFailed as exc:
            status = "failed"
            messages = self.processor.failure_messages(task.job, exc, task.source, timings, model)
            self._log_failure(task, exc)
        except TransientError as exc:
            status = "failed"
            failure = JobFailed(
                exc.dependency, f"still failing after retrying for {self.config.transient_retry_s:g} s: {exc.detail}"
            )
            messages = self.processor.failure_messages(task.job, failure, task.source, timings, model)
            self._log_failure(task, failure)
        except Exception as exc:
            # A model that crashes on one input must not stop the jobs behind it.
            log.exception("job crashed", extra=self._job_fields(task))
            status = "failed"
            failure = JobFailed("model", f"{type(exc).__name__}: {exc}"[:900])
            messages = self.processor.failure_messages(task.job, failure, task.source, timings, model)
        if not task.claim(TaskState.PUBLISHING):
            return  # timed out meanwhile; the timeout already reported it
        publish_started = time.perf_counter()
        try:
            self._publish(messages)
        except Exception as exc:
            self.fatal = exc
            log.exception("publish failed; stopping without committing this job", extra=self._job_fields(task))
            return
        timings.finished = time.perf_counter()
        timings.publish_s = timings.finished - publish_started
        with task.lock:
            task.state = TaskState.DONE
        self._observe(task, status, model)
        with self._finished_lock:
            self._finished.append(task)

    def _time_out(self, task: Task) -> None:
        """Report a job that ran past its timeout; the model call cannot be interrupted, its output is dropped."""
        failure = JobTimedOut(self.config.job_timeout_s)
        model = self.processor.model_of(task.job) if task.job else None
        self._log_failure(task, failure)
        try:
            self._publish(self.processor.failure_messages(task.job, failure, task.source, task.timings, model))
        except Exception as exc:
            self.fatal = exc
            return
        task.timings.finished = time.perf_counter()
        self._observe(task, "failed", model)
        if task.future is not None:
            self._abandoned.add(task.future)
        self._release(task)

    def _publish(self, messages: list[OutMessage]) -> None:
        assert self._producer is not None
        report = _LockedReport()
        for message in messages:
            produce(self._producer, message.topic, message.value, message.key, report)
        flush_or_raise(self._producer, report, self.config.produce_timeout_s)

    def _observe(self, task: Task, status: str, model: tuple[str, str] | None) -> None:
        kind = str(task.job.kind) if task.job else "undecodable"
        model_name = model[0] if model else "none"
        metrics.JOBS.labels(kind, model_name, status).inc()
        metrics.JOB_SECONDS.labels(kind).observe(task.timings.total_s)
        metrics.MODEL_SECONDS.labels(model_name).observe(task.timings.model_s)
        metrics.OVERHEAD_SECONDS.observe(task.timings.overhead_s)
        if self.on_job_done is not None:
            job_id = str(task.job.job_id) if task.job else None
            self.on_job_done(JobRecord(job_id, status, task.timings, model_name))

    def _log_failure(self, task: Task, failure: JobFailed) -> None:
        metrics.DEAD_LETTERS.labels(failure.field).inc()
        log.warning("job failed", extra={**self._job_fields(task), "field": failure.field, "reason": failure.reason})

    @staticmethod
    def _job_fields(task: Task) -> dict[str, Any]:
        fields: dict[str, Any] = {"partition": task.source.partition, "offset": task.source.offset}
        if task.job is not None:
            fields["job_id"] = str(task.job.job_id)
        return fields
