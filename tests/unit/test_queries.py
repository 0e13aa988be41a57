"""The statement catalogue: every row-locking read also exists without its lock."""

from __future__ import annotations

from ffleet.store import queries


def test_a_locking_read_has_an_unlocked_twin_in_every_dialect() -> None:
    postgres = queries.for_dialect("postgresql")
    sqlite = queries.for_dialect("sqlite")
    locked = postgres["claim_candidates"]
    assert locked.endswith("FOR UPDATE SKIP LOCKED")
    unlocked = postgres["claim_candidates" + queries.UNLOCKED]
    assert unlocked == locked.removesuffix("FOR UPDATE SKIP LOCKED").rstrip()
    assert sqlite["claim_candidates" + queries.UNLOCKED] == sqlite["claim_candidates"]
    assert "FOR UPDATE" not in postgres["job_locked" + queries.UNLOCKED]
    assert set(postgres) == set(sqlite)
    assert "node_get" + queries.UNLOCKED not in postgres  # a plain read needs no twin
