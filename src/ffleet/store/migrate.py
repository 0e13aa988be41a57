"""Versioned schema migrations: frozen DDL files, applied in order, recorded in `ffleet_schema`.

Migration N is the file `migrations/NNNN_name.sql`, or `NNNN_name.sqlite.sql` and
`NNNN_name.postgresql.sql` where the engines need different DDL. Its first line is a comment
that describes it. A file is never edited once released: a database records which versions it
has, so a changed file would leave old databases different from new ones. A schema change is
one new numbered file (and the matching change to the declared schema in schema.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from ffleet.store.base import SchemaTooNew
from ffleet.store.db import Database

MIGRATIONS = resources.files("ffleet.store").joinpath("migrations")
_FILE = re.compile(r"^(\d{4})_(\w+?)(?:\.(sqlite|postgresql))?\.sql$")
_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def load(dialect: str, directory: Traversable = MIGRATIONS) -> list[Migration]:
    """The migrations for `dialect` in `directory`, in order; versions must run 1, 2, 3, ..."""
    chosen: dict[int, Traversable] = {}
    for entry in directory.iterdir():
        match = _FILE.match(entry.name)
        if match is None or match.group(3) not in (None, dialect):
            continue
        version = int(match.group(1))
        if version in chosen and match.group(3) is None:
            continue  # the dialect's own variant wins over a shared file
        chosen[version] = entry
    if sorted(chosen) != list(range(1, len(chosen) + 1)):
        raise ValueError(f"migration versions in {directory} are not 1..N: {sorted(chosen)}")
    return [_read(version, chosen[version]) for version in sorted(chosen)]


def _read(version: int, entry: Traversable) -> Migration:
    text = entry.read_text("utf-8")
    first = text.splitlines()[0] if text else ""
    if not first.startswith("--"):
        raise ValueError(f"{entry.name}: the first line must be a comment describing it")
    statements = tuple(s.strip() for s in _STATEMENT_END.split(text) if _has_sql(s))
    return Migration(version, first.lstrip("- ").strip(), statements)


def _has_sql(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


def migrate(db: Database, now: float, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the missing migrations in one transaction; returns the versions applied.

    Refuses (SchemaTooNew) a database that a newer ffleet already migrated past what this one
    knows: running on it could corrupt what the newer version wrote.
    """
    steps = load(db.dialect) if migrations is None else migrations
    latest = steps[-1].version
    with db.transaction() as tx:
        tx.run("schema_lock")
        tx.run("schema_table_create")
        done = {row["version"] for row in tx.all("schema_versions")}
        if done and max(done) > latest:
            raise SchemaTooNew(
                f"the database has schema version {max(done)}, newer than the {latest} this "
                "ffleet knows; a newer ffleet wrote it: upgrade ffleet, or use another database"
            )
        applied = []
        for step in steps:
            if step.version in done:
                continue
            for statement in step.statements:
                tx.ddl(statement)
            tx.run(
                "schema_record",
                {"version": step.version, "description": step.description, "applied_at": now},
            )
            applied.append(step.version)
    return applied
