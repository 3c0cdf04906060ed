"""Numbered schema migrations, applied in order and recorded in ``schema_migrations``.

Files are ``migrations/NNNN_name.sql``: statements ending in ``;`` at the end of a line, with the
placeholders ``${database}`` and ``${on_cluster}``, written for one node; :func:`render_statement`
gives their cluster form (docs/design.md, "Scaling out"). Invariant: an applied file is never
edited: its checksum is recorded and a change is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template

from clickhouse.backend import Warehouse, quote_identifier
from clickhouse.errors import MigrationError, QueryError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SHARD_BY = re.compile(r"^--\s*shard by:\s*(.+?)\s*$", re.MULTILINE)
_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")
_ENGINE = re.compile(r"ENGINE\s*=\s*(\w*MergeTree)(?:\((.*?)\))?(?=\s|$)", re.DOTALL)
_MV = re.compile(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)")
_MV_TO = re.compile(r"\bTO (\w+)")
_FROM = re.compile(r"\bFROM (\w+)\b")
_ALTER_TABLE = re.compile(r"^ALTER TABLE (\w+)")
_RENAME_TABLE = re.compile(r"^RENAME TABLE ")
_RENAME_PAIR = re.compile(r"\b(\w+) TO (\w+)\b")
_DROP_TABLE = re.compile(r"^DROP TABLE IF EXISTS (\w+)")

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations${on_cluster}
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(0, path.stem, "", f"file name {path.name!r} is not NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(0, "", "", f"two migration files share a version: {versions}")
    return migrations


def split_statements(sql: str) -> list[str]:
    statements = []
    for chunk in re.split(r";\s*$", sql, flags=re.MULTILINE):
        # Keep directive comments; they belong to the statement below them.
        lines = [line for line in chunk.splitlines() if line.strip()]
        body = [line for line in lines if not line.lstrip().startswith("--")]
        if body:
            statements.append("\n".join(lines).strip())
    return statements


def _replicated(engine: str, args: str | None, database: str, table: str) -> str:
    path = f"'/clickhouse/tables/{{shard}}/{database}/{table}'"
    extra = f", {args}" if args else ""
    return f"ENGINE = Replicated{engine}({path}, '{{replica}}'{extra})"


def render_statement(statement: str, *, database: str, cluster: str | None) -> list[str]:
    """One migration statement as the DDL to run: itself on one node, or its cluster form.

    The cluster form turns a MergeTree table ``t`` into a Replicated ``t_local`` on every node plus a
    Distributed ``t`` sharded by the ``-- shard by: <expr>`` comment above the statement; materialized
    views then read and write the local tables, ``ALTER TABLE`` changes the local tables and the
    Distributed one, ``RENAME TABLE`` renames the local tables (the Distributed tables keep their
    names and read the renamed local ones), ``DROP TABLE IF EXISTS`` drops both.
    """
    on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    text = Template(statement).substitute(database=database, on_cluster=on_cluster)
    shard = _SHARD_BY.search(text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()
    if not cluster:
        return [text]
    table = _CREATE_TABLE.search(text)
    engine = _ENGINE.search(text)
    if table and engine and "MergeTree" in engine.group(1):
        name = table.group(1)
        local = f"{name}_local"
        local_ddl = _CREATE_TABLE.sub(f"CREATE TABLE IF NOT EXISTS {local}", text, count=1)
        local_ddl = _ENGINE.sub(lambda m: _replicated(m.group(1), m.group(2), database, local), local_ddl, count=1)
        if shard is None:
            raise MigrationError(0, name, statement, f"table {name} needs a '-- shard by:' line for a cluster")
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {name}{on_cluster} AS {local}\n"
            f"ENGINE = Distributed({quote_identifier(cluster)}, {database}, {local}, {shard.group(1)})"
        )
        return [local_ddl, distributed]
    alter = _ALTER_TABLE.match(text)
    if alter:
        # A column added to a sharded table goes to its local tables, then to the Distributed one.
        name = alter.group(1)
        return [_ALTER_TABLE.sub(f"ALTER TABLE {name}_local", text, count=1), text]
    if _RENAME_TABLE.match(text):
        # A Distributed table reads its local table by name: renaming the local tables swaps what
        # the Distributed one of the same name reads, so only they are renamed.
        head, _, tail = text.partition(on_cluster)
        return [_RENAME_PAIR.sub(lambda m: f"{m.group(1)}_local TO {m.group(2)}_local", head) + on_cluster + tail]
    drop = _DROP_TABLE.match(text)
    if drop:
        # A sharded table is two: the Distributed one first, then the local tables behind it.
        name = drop.group(1)
        return [text, _DROP_TABLE.sub(f"DROP TABLE IF EXISTS {name}_local", text, count=1)]
    if _MV.search(text):
        # A view fires on the inserts a node receives: local tables in, local tables out.
        text = _MV_TO.sub(lambda m: f"TO {m.group(1)}_local", text, count=1)
        head, _, select = text.partition(" AS\n")
        if select:
            select = _FROM.sub(lambda m: f"FROM {m.group(1)}_local", select)
            text = f"{head} AS\n{select}"
        return [text]
    return [text]


def render(migration: Migration, *, database: str, cluster: str | None) -> list[str]:
    statements: list[str] = []
    for statement in split_statements(migration.sql):
        statements.extend(render_statement(statement, database=database, cluster=cluster))
    return statements


@dataclass(frozen=True, slots=True)
class MigrationReport:
    applied: list[str]
    already_applied: list[str]


def applied_versions(warehouse: Warehouse) -> dict[int, str]:
    rows = warehouse.query_rows(
        "SELECT version, argMax(checksum, applied_at) AS checksum FROM schema_migrations GROUP BY version"
    )
    return {int(row["version"]): str(row["checksum"]) for row in rows}


def migrate(warehouse: Warehouse, *, cluster: str | None = None, directory: Path = MIGRATIONS_DIR) -> MigrationReport:
    """Apply every migration not yet recorded. Safe to run again and from several processes:
    every statement is ``IF NOT EXISTS``, so a half-applied file completes on the next run."""
    for ddl in render_statement(LEDGER_DDL, database=warehouse.database, cluster=cluster):
        warehouse.command(ddl)
    done = applied_versions(warehouse)
    report = MigrationReport(applied=[], already_applied=[])
    for migration in discover(directory):
        label = f"{migration.version:04d}_{migration.name}"
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(
                    migration.version,
                    migration.name,
                    "",
                    "the file changed after it was applied; add a new migration instead of editing this one",
                )
            report.already_applied.append(label)
            continue
        for statement in render(migration, database=warehouse.database, cluster=cluster):
            try:
                warehouse.command(statement)
            except QueryError as exc:
                raise MigrationError(migration.version, migration.name, statement, exc.message) from exc
        warehouse.command(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES ({version:UInt32}, {name:String}, {checksum:String}, {applied_at:DateTime64(3, 'UTC')})",
            {
                "version": migration.version,
                "name": migration.name,
                "checksum": migration.checksum,
                "applied_at": datetime.now(UTC),
            },
        )
        report.applied.append(label)
    return report
