"""The schema is what the migrations build, and re-opening a database migrates nothing."""

from __future__ import annotations

from sqlalchemy import inspect

from ffleet.store import SchedulingPolicy, open_store
from ffleet.store.schema import LATEST, MIGRATIONS, metadata


def test_migrations_build_the_declared_schema_once(backend_url: str) -> None:
    first = open_store(backend_url, SchedulingPolicy())
    try:
        with first.db.engine.connect() as conn:  # type: ignore[attr-defined]
            tables = set(inspect(conn).get_table_names())
            versions = conn.exec_driver_sql("SELECT version FROM ffleet_schema").scalars().all()
            columns = {c["name"] for c in inspect(conn).get_columns("jobs")}
        assert tables >= set(metadata.tables)
        assert sorted(versions) == [version for version, _, _ in MIGRATIONS]
        assert versions[-1] == LATEST
        assert columns == {c.name for c in metadata.tables["jobs"].columns}
    finally:
        first.close()
    if backend_url != "memory":  # a file or server keeps its schema: nothing to apply again
        again = open_store(backend_url, SchedulingPolicy())
        with again.db.engine.connect() as conn:  # type: ignore[attr-defined]
            count = conn.exec_driver_sql("SELECT count(*) FROM ffleet_schema").scalar()
        again.close()
        assert count == len(MIGRATIONS)
