"""Migrations: what they build is the declared schema, and old databases upgrade in place.

The declared schema (ffleet.store.schema) is never executed; databases are built only by the
frozen DDL files, so comparing the two can fail, and does whenever a migration and the
declaration disagree.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Index, create_engine, inspect, text
from typer.testing import CliRunner

from ffleet.cli import app as cli
from ffleet.store import SchedulingPolicy, SchemaTooNew, open_store
from ffleet.store.migrate import MIGRATIONS, load, migrate
from ffleet.store.schema import metadata
from ffleet.store.sql import SqlStore
from tests.conftest import POSTGRES_URL, store_url

FIXTURES = Path(__file__).parent.parent / "fixtures" / "store_v1"
TABLES = ("nodes", "jobs", "attempts", "results")


def _where(text_: object) -> str | None:
    """A partial index's condition, spelled the same whatever the engine reflects."""
    if text_ is None:
        return None
    spelled = str(text_).lower().replace("jobs.", "").replace("::text", "")
    return "".join(ch for ch in spelled if ch not in "() ")


def _sorting(conn: Connection, index: dict[str, Any]) -> list[str]:
    """Column names, with ` desc` on descending ones (SQLite's reflection omits the order)."""
    if conn.dialect.name == "sqlite":
        info = conn.exec_driver_sql(f"PRAGMA index_xinfo({index['name']})").all()
        desc = {row[2] for row in info if row[5] and row[3]}  # key column, descending
    else:
        desc = {c for c, how in index.get("column_sorting", {}).items() if "desc" in how}
    return [f"{c} desc" if c in desc else c for c in index["column_names"]]


def reflected(conn: Connection) -> dict[str, Any]:
    found = inspect(conn)
    dialect = conn.dialect.name
    shape: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        shape[table] = {
            "columns": [
                (c["name"], c["type"].compile(conn.dialect), c["nullable"])
                for c in found.get_columns(table)
            ],
            "primary_key": found.get_pk_constraint(table)["constrained_columns"],
            "unique": sorted(u["column_names"] for u in found.get_unique_constraints(table)),
            "indexes": sorted(
                (
                    i["name"],
                    _sorting(conn, i),
                    bool(i["unique"]),
                    _where(i.get("dialect_options", {}).get(f"{dialect}_where")),
                )
                for i in found.get_indexes(table)
                if "duplicates_constraint" not in i
            ),
        }
    return shape


def _declared_index(index: Index, dialect: str) -> tuple[str, list[str], bool, str | None]:
    assert index.table is not None
    prefix = f"{index.table.name}."
    columns = [str(e).removeprefix(prefix).replace(" DESC", " desc") for e in index.expressions]
    where = index.dialect_options[dialect]["where"]
    condition = None
    if where is not None:
        condition = _where(where.compile(compile_kwargs={"literal_binds": True}))
    assert index.name is not None
    return (index.name, columns, bool(index.unique), condition)


def declared(conn: Connection) -> dict[str, Any]:
    dialect = conn.dialect.name
    shape: dict[str, Any] = {}
    for name in sorted(metadata.tables):
        table = metadata.tables[name]
        shape[name] = {
            "columns": [(c.name, c.type.compile(conn.dialect), c.nullable) for c in table.columns],
            "primary_key": [c.name for c in table.primary_key.columns],
            "unique": sorted([c.name] for c in table.columns if c.unique),
            "indexes": sorted(_declared_index(i, dialect) for i in table.indexes),
        }
    return shape


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = {
            table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
            for table in TABLES
        }
    engine.dispose()
    return rows


def shipped() -> list[tuple[int, str]]:
    """The versions this ffleet's migrations record (the same for both engines)."""
    return [(m.version, m.description) for m in load("sqlite")]


LATEST = shipped()[-1][0]
NEWER = LATEST + 1  # a version only a newer ffleet knows
V1 = [(1, "nodes, jobs, attempts, results")]


def kept(table: str, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]) -> bool:
    """Every row as it was; columns that later migrations added at the end hold NULL, or
    their declared default."""
    columns = list(metadata.tables[table].columns)

    def fresh(index: int, value: Any) -> bool:
        default = columns[index].server_default
        return value is None or (default is not None and value == getattr(default, "arg", None))

    return len(before) == len(after) and all(
        row[: len(old)] == old and all(fresh(i, v) for i, v in enumerate(row) if i >= len(old))
        for old, row in zip(before, after, strict=True)
    )


def versions(url: str) -> list[tuple[int, str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text("SELECT version, description FROM ffleet_schema ORDER BY 1"))
        recorded = [(int(v), str(d)) for v, d in found]
    engine.dispose()
    return recorded


@pytest.fixture(params=["sqlite", "postgres"])
def file_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database that outlives its store: an SQLite file or the PostgreSQL test database."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def release_0_1_0(file_url: str, tmp_path: Path) -> str:
    """`file_url` holding what release 0.1.0 wrote (tests/fixtures/store_v1/make_fixture.py)."""
    if file_url.startswith("sqlite"):
        shutil.copy(FIXTURES / "release_0_1_0.db", tmp_path / "ffleet.db")
    else:
        engine = create_engine(POSTGRES_URL)
        raw = engine.raw_connection()  # its own session: the dump resets search_path
        try:
            raw.cursor().execute((FIXTURES / "release_0_1_0.postgresql.sql").read_text())
            raw.commit()
        finally:
            raw.close()
            engine.dispose()
    return file_url


def test_migrations_build_the_declared_schema(backend_url: str) -> None:
    store = open_store(backend_url, SchedulingPolicy())
    try:
        assert isinstance(store, SqlStore)
        with store.db.engine.connect() as conn:
            assert reflected(conn) == declared(conn)
    finally:
        store.close()


def test_reopening_applies_nothing(file_url: str) -> None:
    open_store(file_url).close()
    open_store(file_url).close()
    assert versions(file_url) == shipped()


def test_a_release_0_1_0_database_upgrades_and_keeps_every_row(release_0_1_0: str) -> None:
    before = snapshot(release_0_1_0)
    assert versions(release_0_1_0) == V1
    assert {table: len(rows) for table, rows in before.items()} == {
        "nodes": 2,
        "jobs": 5,
        "attempts": 4,
        "results": 3,
    }
    store = open_store(release_0_1_0)
    try:
        assert isinstance(store, SqlStore)
        with store.db.engine.connect() as conn:
            assert reflected(conn) == declared(conn)  # 0.1.0 made migration 1, the rest apply
        found, total = store.list_jobs(None, None, 0)
        assert total == 5
        assert sorted(j.status for j in found) == [
            "canceled",
            "completed",
            "failed",
            "pending",
            "running",
        ]
        running = next(j for j in found if j.status == "running")
        assert running.progress is not None and running.progress.updated_at == 1_800_000_320.0
        completed = next(j for j in found if j.status == "completed")
        result = store.get_job(completed.id).result
        assert result is not None and result.metrics == {"fps": 123.5, "frames": 300}
        failed = store.get_job(next(j.id for j in found if j.status == "failed"))
        assert [a.outcome for a in failed.attempts] == ["failed", "failed"]
    finally:
        store.close()
    after = snapshot(release_0_1_0)
    assert all(kept(table, before[table], after[table]) for table in TABLES)
    assert versions(release_0_1_0) == shipped()


def test_pending_migrations_apply_in_order_and_keep_every_row(
    release_0_1_0: str, tmp_path: Path
) -> None:
    steps = tmp_path / "migrations"
    steps.mkdir()
    for entry in MIGRATIONS.iterdir():
        if entry.name.endswith(".sql"):
            (steps / entry.name).write_text(entry.read_text("utf-8"))
    (steps / f"{LATEST + 1:04d}_node_notes.sql").write_text(
        "-- nodes get a note\nALTER TABLE nodes ADD COLUMN note TEXT;\n"
    )
    # Needs the previous one's column; each engine runs its own variant.
    for dialect in ("sqlite", "postgresql"):
        (steps / f"{LATEST + 2:04d}_fill_notes.{dialect}.sql").write_text(
            f"-- notes filled in\nUPDATE nodes SET note = '{dialect}:' || id;\n"
            "CREATE INDEX ix_nodes_note ON nodes (note);\n"
        )
    store = open_store(release_0_1_0)  # up to this ffleet's own latest version
    store.close()
    before = snapshot(release_0_1_0)
    store = open_store(release_0_1_0)
    try:
        assert isinstance(store, SqlStore)
        assert migrate(store.db, time.time(), load(store.db.dialect, steps)) == [
            LATEST + 1,
            LATEST + 2,
        ]
        assert migrate(store.db, time.time(), load(store.db.dialect, steps)) == []
        dialect = store.db.dialect
    finally:
        store.close()
    after = snapshot(release_0_1_0)
    assert [row[:-1] for row in after["nodes"]] == before["nodes"]
    assert [row[-1] for row in after["nodes"]] == [f"{dialect}:{row[0]}" for row in before["nodes"]]
    assert {t: after[t] for t in TABLES if t != "nodes"} == {
        t: before[t] for t in TABLES if t != "nodes"
    }
    assert versions(release_0_1_0) == [
        *shipped(),
        (LATEST + 1, "nodes get a note"),
        (LATEST + 2, "notes filled in"),
    ]


def test_a_failed_migration_changes_nothing(release_0_1_0: str, tmp_path: Path) -> None:
    steps = tmp_path / "migrations"
    steps.mkdir()
    for entry in MIGRATIONS.iterdir():
        if entry.name.endswith(".sql"):
            (steps / entry.name).write_text(entry.read_text("utf-8"))
    (steps / f"{LATEST + 1:04d}_half.sql").write_text(
        "-- breaks halfway\nALTER TABLE nodes ADD COLUMN note TEXT;\nALTER TABLE nope ADD x INT;\n"
    )
    before = snapshot(release_0_1_0)
    store = open_store(release_0_1_0)
    try:
        assert isinstance(store, SqlStore)
        with pytest.raises(Exception, match="nope"):
            migrate(store.db, time.time(), load(store.db.dialect, steps))
    finally:
        store.close()
    after = snapshot(release_0_1_0)
    assert all(kept(table, before[table], after[table]) for table in TABLES)
    assert versions(release_0_1_0) == shipped()  # this ffleet's own ones, not the broken one


def _from_the_future(url: str) -> None:
    open_store(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO ffleet_schema VALUES (:v, 'from a newer ffleet', 0)"), {"v": NEWER}
        )
    engine.dispose()


def test_a_database_from_a_newer_ffleet_is_refused(file_url: str) -> None:
    _from_the_future(file_url)
    refused = f"schema version {NEWER}, newer than the {LATEST} this ffleet"
    with pytest.raises(SchemaTooNew, match=refused):
        open_store(file_url)
    assert versions(file_url)[-1] == (NEWER, "from a newer ffleet")


def test_ffleet_master_says_why_it_refuses_a_newer_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ffleet.db'}"
    _from_the_future(url)
    outcome = CliRunner().invoke(cli, ["master", "--store", url])
    assert outcome.exit_code == 2
    assert f"schema version {NEWER}" in " ".join(outcome.output.split())


def test_migration_files_load_for_each_engine() -> None:
    for dialect in ("sqlite", "postgresql"):
        first = load(dialect)[0]
        assert (first.version, first.description) == (1, "nodes, jobs, attempts, results")
        assert len(first.statements) == 8  # four tables, four indexes
