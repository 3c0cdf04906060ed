"""The local stack: real Kafka (one node or a KRaft cluster) and a real S3 server, natively on loopback.

``python -m infra up|down|status|env``. Data, logs and pid files live under ``FS_STACK__DIR`` (unset:
``FS_PATHS__DATA_DIR``); downloaded and built artifacts under ``FS_STACK__CACHE_DIR``
(``~/.cache/funnelstream``). ``up`` starts only what is not already running and healthy; ``down``
stops only what ``up`` started, by the pid it recorded. ``FS_STACK__KAFKA_BROKERS=3`` is the cluster
form; ``env`` prints the ``FS_KAFKA__*`` a service needs to use it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from infra.broker import KafkaService, client_env
from infra.objectstore import ObjectStoreService
from infra.service import InfraError, InfraSettings, Service

__all__ = ["SERVICES", "InfraError", "InfraSettings", "down", "status", "up"]


SERVICES: dict[str, Callable[[InfraSettings], Service]] = {"kafka": KafkaService, "s3": ObjectStoreService}


def _selected(names: list[str] | None) -> list[str]:
    chosen = names or list(SERVICES)
    unknown = [name for name in chosen if name not in SERVICES]
    if unknown:
        raise SystemExit(f"unknown service(s) {unknown}; choose from {list(SERVICES)}")
    return chosen


def up(names: list[str] | None = None, settings: InfraSettings | None = None) -> dict[str, str]:
    settings = settings or InfraSettings()
    settings.stack.dir.mkdir(parents=True, exist_ok=True)
    return {name: SERVICES[name](settings).up() for name in _selected(names)}


def down(names: list[str] | None = None, settings: InfraSettings | None = None) -> dict[str, bool]:
    settings = settings or InfraSettings()
    return {name: SERVICES[name](settings).down() for name in reversed(_selected(names))}


def status(settings: InfraSettings | None = None) -> dict[str, dict[str, object]]:
    settings = settings or InfraSettings()
    report: dict[str, dict[str, object]] = {}
    services: list[Service] = [*KafkaService(settings).brokers, ObjectStoreService(settings)]
    for service in services:
        report[service.name] = {
            "pid": service.process.running_pid(),
            "healthy": service.healthy(),
            "endpoint": service.endpoint(),
            "log": str(service.process.log_file),
        }
    report["clickhouse"] = {
        "pid": None,
        "healthy": True,
        "endpoint": settings.clickhouse.url or f"chdb (embedded) at {settings.clickhouse.chdb_path}",
        "log": "",
    }
    return report


def out_of_sync(settings: InfraSettings | None = None) -> list[str]:
    """The partitions whose in-sync replicas are fewer than their replicas, or that have no leader."""
    kafka = KafkaService(settings or InfraSettings())
    return [
        f"{p.topic}[{p.partition}] leader={p.leader} replicas={list(p.replicas)} in-sync={list(p.in_sync)}"
        for p in kafka.partitions()
        if p.under_replicated or p.leader < 0
    ]


def _print_status(settings: InfraSettings) -> int:
    rows = status(settings)
    for name, row in rows.items():
        state = "up" if row["healthy"] else "down"
        print(f"{name:<10} {state:<5} pid={row['pid'] or '-':<8} {row['endpoint']}")
    if not any(row["healthy"] for name, row in rows.items() if name.startswith("kafka")):
        return 1
    try:
        lagging = out_of_sync(settings)
    except Exception as exc:  # a cluster without a reachable node answers no metadata
        print(f"partitions: unknown ({type(exc).__name__}: {exc})")
        return 1
    print(f"partitions out of sync: {len(lagging)}")
    for line in lagging:
        print(f"  {line}")
    return 0 if all(row["healthy"] for row in rows.values()) and not lagging else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in {"up", "down", "status", "env"}:
        print("usage: python -m infra up|down|status|env [kafka] [s3]", file=sys.stderr)
        return 2
    command, names = args[0], args[1:] or None
    started = time.monotonic()
    try:
        if command == "up":
            for name, state in up(names).items():
                print(f"{name:<6} {state}")
        elif command == "down":
            for name, stopped in down(names).items():
                print(f"{name:<6} {'stopped' if stopped else 'was not running'}")
        elif command == "env":
            for key, value in client_env(InfraSettings()).items():
                print(f"export {key}={value}")
            return 0
        else:
            return _print_status(InfraSettings())
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"({command} took {time.monotonic() - started:.1f}s)", file=sys.stderr)
    return 0
