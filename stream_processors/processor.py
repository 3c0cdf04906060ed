"""The processing core: dedup, enrichment and sessionization of one batch of raw records.

Plain Python, tested in memory; the Faust agents only feed batches in and write the outputs.
A record is a block of events (the collector's, marked by the block header: trusted for shape,
checked for a known schema version and the collector's stamps) or one event of any other
producer (validated in full by the contract); every event is brought to one dict form. Each
event that cannot be processed dead-letters alone; nothing a document holds stops its neighbours.
Owns the state layout (``a:<anonymous_id>`` sessions of a device, ``b:<partition>:<first_offset>``
a batch's admitted ids and watermark, ``o:<partition>`` the partition's progress), all keyed by the
``events.raw`` partition they came from. Invariant: replaying a partition gives the same sessions
and ids; a record below the partition's progress is a redelivery and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import orjson
from pydantic import ValidationError

from funnelstream.blocks import BLOCK_VERSION, SEPARATOR
from funnelstream.contract import (
    EVENT_ADAPTER,
    SCHEMA_VERSION,
    EventType,
    FunnelStep,
    parse_event_json,
)
from funnelstream.deadletter import dead_letter
from funnelstream.errors import ContractError, FieldError
from stream_processors.enrich import STEP_OF, Enricher
from stream_processors.errors import PoisonMessage

DLQ_STAGE = "stream"

# Positions in a session list (kept as a list: a few hundred thousand open sessions must fit).
SID, START, LAST, COUNT, LATE, INPUTS, DEEPEST, EXPERIMENTS, USER, VERSION = range(10)
# Where the sessions start in a device's list, after its partition and applied offset.
SESSIONS = 2
_STEP_NAMES = {int(step): step.name.lower() for step in FunnelStep}
_EVENT_TYPES = frozenset(str(kind) for kind in EventType)
_UUID_LENGTH = 36
_UUID_DIGITS = 32


class StateStore(Protocol):
    def get(self, key: str) -> Any | None: ...

    def put(self, partition: int, key: str, value: Any) -> None: ...

    def delete(self, partition: int, key: str) -> None: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...

    def key_snapshot(self) -> list[str]:
        """A snapshot of the keys: cheaper than :meth:`items` when most values are not needed."""
        ...

    def evict(self, key: str) -> None:
        """Forget a key locally (its partition moved to another worker); no changelog write."""


class MemoryStateStore:
    """A dict with the store interface; records every write like a changelog would."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.changelog: list[tuple[int, str, Any]] = []

    def get(self, key: str) -> Any | None:
        return self.data.get(key)

    def put(self, partition: int, key: str, value: Any) -> None:
        self.data[key] = value
        self.changelog.append((partition, key, orjson.loads(orjson.dumps(value))))

    def delete(self, partition: int, key: str) -> None:
        self.data.pop(key, None)
        self.changelog.append((partition, key, None))

    def items(self) -> Iterable[tuple[str, Any]]:
        return list(self.data.items())

    def key_snapshot(self) -> list[str]:
        return list(self.data)

    def evict(self, key: str) -> None:
        self.data.pop(key, None)


@dataclass(frozen=True, slots=True)
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    topic: str = ""
    block: bytes | None = None
    """The block header's version (``block_version`` of the record's headers); None for a
    record without it, which holds one event."""


@dataclass(frozen=True, slots=True)
class SessionRules:
    gap_ms: int = 30 * 60 * 1000
    max_ms: int = 24 * 3600 * 1000
    lateness_ms: int = 5 * 60 * 1000
    dedup_window_ms: int = 24 * 3600 * 1000


@dataclass
class Output:
    enriched: list[tuple[bytes, bytes]] = field(default_factory=list)
    sessions: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    state_writes: list[tuple[int, str, Any]] = field(default_factory=list)
    """(partition, key, value or None to delete); applied by :meth:`StreamProcessor.commit`
    only after the messages above are acknowledged, so the changelog never gets ahead of the
    output: a crash in between repeats output, it never loses it."""
    retired: set[str] = field(default_factory=set)
    """Sessions absorbed by a merge in this batch: their retirement is their last summary."""
    progress: dict[int, int] = field(default_factory=dict)
    """partition -> next offset to process, once this batch is committed."""
    gaps: dict[int, tuple[int, int]] = field(default_factory=dict)
    """partition -> (offset expected, offset delivered instead): records were skipped upstream;
    the consumer must be moved back to the expected offset."""
    admitted: dict[int, tuple[str, int, list[int]]] = field(default_factory=dict)
    watermarks: dict[int, int] = field(default_factory=dict)
    """partition -> event-time watermark after this batch."""
    """partition -> (batch record key, watermark, event ids): ids that count as seen on commit."""


@dataclass
class Counters:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    dead_letters: int = 0
    replayed: int = 0
    redelivered: int = 0
    gaps: int = 0
    merges: int = 0
    sessions_closed: int = 0
    dedup_records_expired: int = 0


_EXPERIMENT_SETS: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
_EXPERIMENT_SETS_MAX = 100_000
_NO_EXPERIMENTS: dict[str, str] = {}


def _merged_experiments(current: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """The variants of a session, as one shared dict per distinct combination.

    Most sessions carry one of a few combinations; sharing them saves a dict per open session.
    Shared dicts are never changed in place: a change builds (or finds) another one.
    """
    if new.items() <= current.items():
        return current
    merged = {**current, **new}
    signature = tuple(sorted(merged.items()))
    shared = _EXPERIMENT_SETS.get(signature)
    if shared is None:
        if len(_EXPERIMENT_SETS) >= _EXPERIMENT_SETS_MAX:
            return merged
        shared = _EXPERIMENT_SETS[signature] = merged
    return shared


def _copy_actor(actor: list[Any]) -> list[Any]:
    """A copy that a batch can change; input tuples and experiment dicts are never changed in
    place, so the copies share them."""
    # Concatenation allocates exactly the slots needed; a list display with * over-allocates.
    return actor[:SESSIONS] + [list(session) for session in actor[SESSIONS:]]


def _compact_actor(actor: list[Any]) -> None:
    """Bring a device record read back from the changelog (JSON: lists, fresh dicts) to the
    compact in-memory form, in place. Also reads the earlier nested form
    ``[partition, applied_offset, [session, ...]]``."""
    if len(actor) == SESSIONS + 1 and (not actor[SESSIONS] or isinstance(actor[SESSIONS][0], list)):
        # A session is never empty and starts with its id; a list of lists is the nested form.
        actor[SESSIONS:] = actor[SESSIONS]
    for session in actor[SESSIONS:]:
        session[INPUTS] = tuple(session[INPUTS])
        session[EXPERIMENTS] = _merged_experiments(_NO_EXPERIMENTS, session[EXPERIMENTS])


def pack_ids(ids: list[int]) -> str:
    """Event ids (UUID integers) as one JSON-friendly string of their 16-byte forms."""
    return base64.b64encode(b"".join(event_id.to_bytes(16, "big") for event_id in ids)).decode("ascii")


def unpack_ids(packed: str | list[str]) -> list[int]:
    """The inverse of :func:`pack_ids`; also reads the earlier form, a list of UUID strings."""
    if isinstance(packed, list):
        return [UUID(text).int for text in packed]
    raw = base64.b64decode(packed)
    return [int.from_bytes(raw[start : start + 16], "big") for start in range(0, len(raw), 16)]


def progress_key(partition: int) -> str:
    return f"o:{partition}"


def session_id_for(anonymous_id: str, start_ms: int) -> str:
    """The same device and start always give the same id, on any worker, after any replay."""
    return hashlib.blake2b(f"{anonymous_id}|{start_ms}".encode(), digest_size=12).hexdigest()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _ms(value: datetime) -> int:
    # Integer arithmetic: a float timestamp can land a microsecond short of a millisecond.
    return (value - _EPOCH) // _ONE_MS


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# --- reading events -------------------------------------------------------------------------------

_STAMPS = ("event_ts", "received_at")


def _text_id(event: Any) -> str | None:
    """The event id a dead letter names, when the document has a readable one."""
    event_id = event.get("event_id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) else None


def _trusted(document: bytes) -> dict[str, Any]:
    """A document of a collector's block: validated and stamped by the collector with this very
    contract, so only what the worker relies on is checked (a known schema version, the type of
    the event, the device, the stamps). Raises :class:`PoisonMessage` naming what is wrong."""
    try:
        event = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"invalid JSON: {exc}", [FieldError("event", f"invalid JSON: {exc}")]) from None
    if type(event) is not dict:
        reason = f"expected a JSON object, got {type(event).__name__}"
        raise PoisonMessage(reason, [FieldError("event", reason)])
    version = event.get("schema_version")
    if (
        type(version) is not int
        or not 1 <= version <= SCHEMA_VERSION
        or event.get("event_type") not in _EVENT_TYPES
        or type(event.get("anonymous_id")) is not str
        or type(event.get("event_ts")) is not str
        or type(event.get("received_at")) is not str
        or type(event.get("client_ts")) is not str
    ):
        errors = _trust_errors(event)
        raise PoisonMessage(
            "not an event as the collector writes it: " + "; ".join(str(error) for error in errors),
            errors,
            event_id=_text_id(event),
        )
    return event


def _trust_errors(event: dict[str, Any]) -> list[FieldError]:
    errors = []
    version = event.get("schema_version")
    if type(version) is not int or not 1 <= version <= SCHEMA_VERSION:
        errors.append(FieldError("schema_version", f"{version!r} is not a schema version this worker knows"))
    event_type = event.get("event_type")
    if event_type not in _EVENT_TYPES:
        errors.append(FieldError("event_type", f"unknown event type {str(event_type)[:64]!r}"))
    if type(event.get("anonymous_id")) is not str:
        errors.append(FieldError("anonymous_id", "expected a string"))
    if type(event.get("client_ts")) is not str:
        errors.append(FieldError("client_ts", "expected a time"))
    for name in _STAMPS:
        if event.get(name) is None:
            errors.append(FieldError(name, "required on events.raw; set by ingest"))
        elif type(event.get(name)) is not str:
            errors.append(FieldError(name, "expected a time"))
    return errors


def _validated(document: bytes) -> dict[str, Any]:
    """An event of any other producer (or of an unknown block version), validated in full by the
    contract and brought to the form the collector writes (JSON types)."""
    try:
        # Validating the bytes directly skips building a dict first. Anything it refuses (an
        # unknown field that belongs in properties, a real error) takes the contract's own path.
        event = EVENT_ADAPTER.validate_json(document)
    except ValidationError:
        try:
            event = parse_event_json(document)
        except ContractError as exc:
            raise PoisonMessage(f"contract violation: {exc}", exc.errors) from None
    missing = [name for name in _STAMPS if getattr(event, name) is None]
    if missing:
        raise PoisonMessage(
            "not stamped by the collector",
            [FieldError(name, "required on events.raw; set by ingest") for name in missing],
            event_id=str(event.event_id),
        )
    fields: dict[str, Any] = EVENT_ADAPTER.dump_python(event, mode="json")
    return fields


def _event_id(event: dict[str, Any]) -> int:
    """The event id as the UUID's integer: half the size of its text in the dedup index. Reads
    the canonical text (8-4-4-4-12 hex digits) directly; anything else goes through ``UUID``."""
    text = event.get("event_id")
    if type(text) is str and len(text) == _UUID_LENGTH:
        digits = text.replace("-", "")
        if len(digits) == _UUID_DIGITS and digits.isalnum() and text[8] == "-" and text[23] == "-":
            try:
                return int(digits, 16)
            except ValueError:
                pass
    raise PoisonMessage("event_id: expected a UUID", [FieldError("event_id", "expected a UUID")], _text_id(event))


def _session_fields(event: dict[str, Any]) -> tuple[int, str, str | None, dict[str, str] | None, str | None]:
    """(event time in ms, device, input id, experiments, user id): what sessions keep of an
    event, checked so that a forged document cannot leave a session half changed."""
    try:
        ts = (datetime.fromisoformat(event["event_ts"]) - _EPOCH) // _ONE_MS
    except (TypeError, ValueError, OverflowError):
        raise PoisonMessage(
            "event_ts: not a time with its UTC offset", [FieldError("event_ts", "expected an ISO 8601 time")]
        ) from None
    input_id = event.get("input_id")
    if input_id is not None and (type(input_id) is not str or len(input_id) != _UUID_LENGTH):
        raise PoisonMessage("input_id: expected a UUID", [FieldError("input_id", "expected a UUID")])
    user_id = event.get("user_id")
    if user_id is not None and type(user_id) is not str:
        raise PoisonMessage("user_id: expected a string", [FieldError("user_id", "expected a string")])
    experiments = event.get("experiments")
    if experiments:
        if type(experiments) is not dict or not all(type(variant) is str for variant in experiments.values()):
            reason = "expected an object of experiment keys and variants"
            raise PoisonMessage(f"experiments: {reason}", [FieldError("experiments", reason)])
    else:
        experiments = None
    return ts, event["anonymous_id"], input_id, experiments, user_id


def _apply(
    session: list[Any],
    ts: int,
    input_id: str | None,
    step: int,
    experiments: dict[str, str] | None,
    user_id: str | None,
) -> None:
    if ts < session[START]:
        session[START] = ts
    if ts > session[LAST]:
        session[LAST] = ts
    session[COUNT] += 1
    if input_id is not None and input_id not in session[INPUTS]:
        session[INPUTS] = (*session[INPUTS], input_id)
    if step > session[DEEPEST]:
        session[DEEPEST] = step
    if experiments:
        session[EXPERIMENTS] = _merged_experiments(session[EXPERIMENTS], experiments)
    if user_id is not None:
        session[USER] = user_id
    session[VERSION] += 1


class StreamProcessor:
    def __init__(
        self,
        store: StateStore,
        enricher: Enricher,
        rules: SessionRules | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.enricher = enricher
        self.rules = rules or SessionRules()
        self.clock = clock
        self.counters = Counters()
        self.watermarks: dict[int, int] = {}
        self._seen: dict[int, set[int]] = {}
        """partition -> the event ids (UUID integers) its live batch records hold."""
        self._batches: dict[int, dict[str, int]] = {}
        """partition -> batch record key -> its watermark, in write order."""
        self.next_offsets: dict[int, int] = {}
        """partition -> next offset to process, as committed to the store."""

    # --- partitions -------------------------------------------------------------------------------

    @property
    def partitions(self) -> set[int]:
        return set(self._seen)

    def load_partition(self, partition: int) -> None:
        """Index what the store holds for a partition just assigned (after its recovery)."""
        seen: set[int] = set()
        batches: list[tuple[int, str, int]] = []
        watermark = -(2**62)
        prefix = f"b:{partition}:"
        for key, value in self.store.items():
            if isinstance(key, bytes):
                key = key.decode()
            if key.startswith(prefix):
                batches.append((value[1], key, value[0]))
                watermark = max(watermark, value[0])
                seen.update(unpack_ids(value[2]))
            elif key.startswith("a:") and value[0] == partition:
                _compact_actor(value)
        batches.sort()
        progress = self.store.get(progress_key(partition))
        if progress is not None:
            self.next_offsets[partition] = int(progress)
        self._seen[partition] = seen
        self._batches[partition] = {key: mark for _, key, mark in batches}
        self.watermarks[partition] = watermark

    def drop_partition(self, partition: int) -> None:
        """Forget a partition this worker no longer owns: its index and its local state."""
        for key in list(self._batches.get(partition, ())):
            self.store.evict(key)
        for key in self._actor_keys({partition}):
            self.store.evict(key)
        self.store.evict(progress_key(partition))
        self.next_offsets.pop(partition, None)
        self._seen.pop(partition, None)
        self._batches.pop(partition, None)
        self.watermarks.pop(partition, None)

    def _actor_keys(self, partitions: set[int]) -> list[str]:
        """The device keys of these partitions, read from the store (no index of our own)."""
        store = self.store
        keys = []
        for key in store.key_snapshot():
            if key.startswith("a:"):
                actor = store.get(key)
                if actor is not None and actor[0] in partitions:
                    keys.append(key)
        return keys

    # --- the batch ----------------------------------------------------------------------------------

    def process(self, records: Iterable[RawRecord]) -> Output:
        """Process whole records: every event of a record is in this batch's output or in none."""
        out = Output()
        now = self.clock()
        changed_actors: dict[str, tuple[int, list[Any], int]] = {}
        """device key -> (partition, the device's record changed on a copy, its applied offset
        before this batch): several events of one record share its offset, so only the offset
        from before the batch tells an event applied before a crash from one applied just now."""
        changed_sessions: dict[str, tuple[str, list[Any]]] = {}
        new_ids: dict[int, list[Any]] = {}
        batch_seen: set[int] = set()
        rules = self.rules
        lateness_ms = rules.lateness_ms
        progress = out.progress
        gaps = out.gaps
        watermarks = out.watermarks
        counters = self.counters
        store_get = self.store.get
        row_of = self.enricher.row
        enriched = out.enriched
        # Every row and summary of the batch carries the same time: serialized once.
        stamp = orjson.Fragment(orjson.dumps(now))
        for record in records:
            partition = record.partition
            seen = self._seen.get(partition)
            if seen is None:
                self.load_partition(partition)
                seen = self._seen[partition]
            offset = record.offset
            expected = progress.get(partition)
            if expected is None:
                expected = self.next_offsets.get(partition)
            if expected is not None and offset != expected:
                if offset < expected:
                    counters.redelivered += 1
                elif partition not in gaps:
                    counters.gaps += 1
                    gaps[partition] = (expected, offset)
                continue
            progress[partition] = offset + 1
            value = record.value
            if value is None:
                counters.dead_letters += 1
                out.dead_letters.append(
                    self._dead_letter(record, b"", PoisonMessage("empty value (tombstone) on the events topic"))
                )
                continue
            trusted = record.block == BLOCK_VERSION
            # A record without the header holds one event, whatever its bytes; a block of an
            # unknown version is split and each of its documents validated in full.
            documents = value.split(SEPARATOR) if record.block is not None else (value,)
            rows: list[bytes] = []
            for document in documents:
                try:
                    event = _trusted(document) if trusted else _validated(document)
                    event_id = _event_id(event)
                except PoisonMessage as exc:
                    counters.dead_letters += 1
                    out.dead_letters.append(self._dead_letter(record, document, exc))
                    continue
                if event_id in seen or event_id in batch_seen:
                    counters.duplicates += 1
                    continue
                watermark = watermarks.get(partition)
                if watermark is None:
                    watermark = self.watermarks[partition]
                # Everything a document's content can fail is done before any state changes:
                # the checks of the fields sessions use, the row and its bytes (the session id,
                # known only after the session logic, is written in front of them).
                try:
                    ts, anonymous_id, input_id, experiments, user_id = _session_fields(event)
                    is_late = ts < watermark - lateness_ms
                    body = orjson.dumps(row_of(event, is_late=is_late, enriched_at=stamp))
                except Exception as exc:  # anything in a document costs that event only
                    counters.dead_letters += 1
                    reason = exc.reason if isinstance(exc, PoisonMessage) else f"unprocessable event: {exc!r}"
                    errors = exc.errors if isinstance(exc, PoisonMessage) else None
                    letter = PoisonMessage(reason, errors, event_id=str(event.get("event_id")))
                    out.dead_letters.append(self._dead_letter(record, document, letter))
                    continue

                batch_seen.add(event_id)
                batch = new_ids.get(partition)
                if batch is None:
                    batch = new_ids[partition] = [offset, offset, []]
                batch[1] = offset
                batch[2].append(event_id)
                if ts > watermark:
                    watermarks[partition] = ts
                actor_key = "a:" + anonymous_id
                pending = changed_actors.get(actor_key)
                if pending is not None:
                    actor, applied = pending[1], pending[2]
                else:
                    stored = store_get(actor_key)
                    # Changed on a copy: the stored state stays as it was until the batch commits.
                    actor = [partition, -1] if stored is None else _copy_actor(stored)
                    applied = actor[1]
                if offset <= applied:
                    # Already applied before a crash; only the output may be missing downstream.
                    counters.replayed += 1
                    session = self._covering(actor[SESSIONS:], ts)
                    session_id = session[SID] if session is not None else session_id_for(anonymous_id, ts)
                else:
                    actor[1] = offset
                    if is_late:
                        counters.late += 1
                        session = self._covering(actor[SESSIONS:], ts)
                        if session is None:
                            session_id = session_id_for(anonymous_id, ts)
                        else:
                            session[LATE] += 1
                            session[VERSION] += 1
                            session_id = session[SID]
                            changed_sessions[session_id] = (anonymous_id, session)
                    else:
                        sessions = actor[SESSIONS:]
                        session = self._assign(anonymous_id, sessions, ts, out, now)
                        actor[SESSIONS:] = sessions
                        _apply(session, ts, input_id, STEP_OF.get(event["event_type"], 0), experiments, user_id)
                        session_id = session[SID]
                        changed_sessions[session_id] = (anonymous_id, session)
                    changed_actors[actor_key] = (partition, actor, applied)
                counters.accepted += 1
                rows.append(b'{"session_id":"' + session_id.encode() + b'",' + body[1:])
            if rows:
                key = record.key or orjson.loads(rows[0])["anonymous_id"].encode()
                enriched.append((key, SEPARATOR.join(rows)))

        for actor_key, (partition, actor, _) in changed_actors.items():
            out.state_writes.append((partition, actor_key, actor))
        for partition, (first, last, ids) in new_ids.items():
            batch_key = f"b:{partition}:{first}"
            mark = watermarks.get(partition, self.watermarks[partition])
            out.state_writes.append((partition, batch_key, [mark, last, pack_ids(ids)]))
            out.admitted[partition] = (batch_key, mark, ids)
        for partition, next_offset in progress.items():
            out.state_writes.append((partition, progress_key(partition), next_offset))
        for session_id, (anonymous_id, session) in changed_sessions.items():
            # `sessions` is compacted: the last message per id must be the newest version.
            if session_id not in out.retired:
                out.sessions.append(self._summary(anonymous_id, session, stamp, closed=False))
        return out

    def _dead_letter(self, record: RawRecord, document: bytes, exc: PoisonMessage) -> tuple[bytes | None, bytes]:
        letter = dead_letter(
            stage=DLQ_STAGE,
            reason=exc.reason,
            payload=document,
            errors=exc.errors,
            original_key=record.key,
            topic=record.topic or None,
            partition=record.partition,
            offset=record.offset,
            event_id=exc.event_id,
        )
        return record.key, letter.encode()

    # --- sessions -----------------------------------------------------------------------------------

    def _covering(self, sessions: list[list[Any]], ts: int) -> list[Any] | None:
        gap = self.rules.gap_ms
        for session in sessions:
            if session[START] - gap <= ts <= session[LAST] + gap:
                return session
        return None

    def _assign(self, anonymous_id: str, sessions: list[list[Any]], ts: int, out: Output, now: datetime) -> list[Any]:
        gap, max_ms = self.rules.gap_ms, self.rules.max_ms
        candidates = [s for s in sessions if s[START] - gap <= ts <= s[LAST] + gap]
        if len(candidates) > 1:
            start = min(ts, min(s[START] for s in candidates))
            last = max(ts, max(s[LAST] for s in candidates))
            if last - start <= max_ms:
                return self._merge(anonymous_id, sessions, candidates, out, now)
        for session in candidates:
            if max(ts, session[LAST]) - min(ts, session[START]) <= max_ms:
                return session
        session = [session_id_for(anonymous_id, ts), ts, ts, 0, 0, (), 0, _NO_EXPERIMENTS, None, 0]
        sessions.append(session)
        sessions.sort(key=lambda s: s[START])
        return session

    def _merge(
        self,
        anonymous_id: str,
        sessions: list[list[Any]],
        candidates: list[list[Any]],
        out: Output,
        now: datetime,
    ) -> list[Any]:
        """An event bridged the gap between sessions: the earliest one absorbs the others.

        Each absorbed session is retired with a final summary (closed, no events) so that the
        last summary of every id on ``sessions`` stays true.
        """
        candidates.sort(key=lambda s: s[START])
        keep = candidates[0]
        for other in candidates[1:]:
            self.counters.merges += 1
            keep[START] = min(keep[START], other[START])
            keep[LAST] = max(keep[LAST], other[LAST])
            keep[COUNT] += other[COUNT]
            keep[LATE] += other[LATE]
            keep[INPUTS] = (*keep[INPUTS], *(input_id for input_id in other[INPUTS] if input_id not in keep[INPUTS]))
            keep[DEEPEST] = max(keep[DEEPEST], other[DEEPEST])
            keep[EXPERIMENTS] = _merged_experiments(keep[EXPERIMENTS], other[EXPERIMENTS])
            keep[USER] = keep[USER] or other[USER]
            keep[VERSION] += other[VERSION]
            sessions.remove(other)
            retired = [other[SID], other[START], other[START], 0, 0, (), 0, {}, other[USER], other[VERSION] + 1]
            out.sessions.append(self._summary(anonymous_id, retired, now, closed=True))
            out.retired.add(other[SID])
        return keep

    def _summary(
        self, anonymous_id: str, session: list[Any], now: datetime | orjson.Fragment, *, closed: bool
    ) -> tuple[bytes, bytes]:
        summary = {
            "session_id": session[SID],
            "anonymous_id": anonymous_id,
            "user_id": session[USER],
            "started_at": _dt(session[START]),
            "last_event_at": _dt(session[LAST]),
            "duration_s": (session[LAST] - session[START]) / 1000,
            "event_count": session[COUNT],
            "late_event_count": session[LATE],
            "input_ids": session[INPUTS],
            "deepest_step": session[DEEPEST],
            "deepest_step_name": _STEP_NAMES[session[DEEPEST]],
            "experiments": session[EXPERIMENTS],
            "closed": closed,
            "version": session[VERSION],
            "updated_at": now,
        }
        return session[SID].encode(), orjson.dumps(summary)

    # --- the timer ----------------------------------------------------------------------------------

    def close_idle(self) -> Output:
        """Close every session that no event can join any more, and drop expired dedup records."""
        out = Output()
        now = self.clock()
        rules = self.rules
        horizons = {
            partition: self.watermarks[partition] - rules.lateness_ms - rules.gap_ms for partition in self._seen
        }
        store = self.store
        for actor_key in store.key_snapshot():
            if not actor_key.startswith("a:"):
                continue
            actor = store.get(actor_key)
            if actor is None or actor[0] not in horizons:
                continue
            partition = actor[0]
            horizon = horizons[partition]
            if not any(session[LAST] < horizon for session in actor[SESSIONS:]):
                continue
            actor = _copy_actor(actor)
            anonymous_id = actor_key[2:]
            keep = []
            for session in actor[SESSIONS:]:
                if session[LAST] < horizon:
                    session[VERSION] += 1
                    self.counters.sessions_closed += 1
                    out.sessions.append(self._summary(anonymous_id, session, now, closed=True))
                else:
                    keep.append(session)
            actor[SESSIONS:] = keep
            out.state_writes.append((partition, actor_key, actor if keep else None))
        for partition in horizons:
            self._expire_dedup(partition, out)
        return out

    def commit(self, out: Output) -> None:
        """Write the state changes of a processed batch, once its output is acknowledged.

        Only now do its event ids count as seen and its offsets as processed: a batch whose output
        failed leaves nothing behind that would make its records look done.
        """
        store = self.store
        for partition, key, value in out.state_writes:
            if value is None:
                store.delete(partition, key)
            else:
                store.put(partition, key, value)
        out.state_writes.clear()
        for partition, (batch_key, mark, ids) in out.admitted.items():
            if partition in self._seen:
                self._batches[partition][batch_key] = mark
                self._seen[partition].update(ids)
        out.admitted.clear()
        for partition, watermark in out.watermarks.items():
            if partition in self._seen:
                self.watermarks[partition] = watermark
        out.watermarks.clear()
        for partition, next_offset in out.progress.items():
            if partition in self._seen:
                self.next_offsets[partition] = next_offset
        out.progress.clear()

    def skip_gap(self, partition: int, next_offset: int) -> Output:
        """Accept that the records below ``next_offset`` no longer exist (retention, or
        transaction markers): the partition continues there. Commit the returned output."""
        out = Output()
        if partition not in self._seen:
            self.load_partition(partition)
        out.progress[partition] = next_offset
        out.state_writes.append((partition, progress_key(partition), next_offset))
        return out

    def _expire_dedup(self, partition: int, out: Output) -> None:
        cutoff = self.watermarks[partition] - self.rules.dedup_window_ms
        batches = self._batches[partition]
        seen = self._seen[partition]
        expired = [key for key, mark in batches.items() if mark < cutoff]
        for key in expired:
            record = self.store.get(key)
            if record is not None:
                # An id is admitted once while any record holds it, so it is in no other record.
                seen.difference_update(unpack_ids(record[2]))
            del batches[key]
            out.state_writes.append((partition, key, None))
            self.counters.dedup_records_expired += 1

    def open_sessions(self) -> int:
        store = self.store
        return sum(len(store.get(key) or ()) - SESSIONS for key in self._actor_keys(set(self._seen)))
