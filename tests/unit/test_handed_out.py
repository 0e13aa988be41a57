"""The kept claims: bounded, used once, and holding what a result reads of its job."""

from __future__ import annotations

import re

import pytest

from ffleet.store.handed_out import COLUMNS, KEPT_PARAMETERS, HandedOut
from ffleet.store.queries import CATALOGS


def claimed(job_id: str) -> dict[str, object]:
    return {column: f"{column} of {job_id}" for column in (*COLUMNS, "priority")} | {"id": job_id}


def test_a_kept_claim_is_taken_once_with_the_columns_a_result_reads() -> None:
    kept = HandedOut()
    kept.add(claimed("a"))
    row = kept.take("a")
    assert row is not None and tuple(row) == COLUMNS and row["id"] == "a"
    assert kept.take("a") is None


def test_the_oldest_claims_go_first_past_the_bound() -> None:
    kept = HandedOut(kept=2)
    for job_id in "abc":
        kept.add(claimed(job_id))
    assert [kept.take(job_id) is not None for job_id in "abc"] == [False, True, True]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_kept_columns_are_what_a_result_reads(dialect: str) -> None:
    """`job_for_result`'s select list: a result read from the database and one from its kept
    claim see the same columns."""
    found = re.match(r"SELECT (.*?)\s+FROM jobs", CATALOGS[dialect]["job_for_result"], re.S)
    assert found is not None
    assert tuple(name.strip() for name in found.group(1).split(",")) == COLUMNS


def test_a_job_claimed_again_is_kept_as_the_newest() -> None:
    kept = HandedOut(kept=2)
    for job_id in "aba":
        kept.add(claimed(job_id))
    kept.add(claimed("c"))  # drops b, the oldest claim, not a (claimed again since)
    assert [kept.take(job_id) is not None for job_id in "abc"] == [True, False, True]


def test_a_job_with_long_parameters_is_not_kept() -> None:
    kept = HandedOut()
    kept.add(claimed("a") | {"parameters": "x" * (KEPT_PARAMETERS + 1)})
    assert kept.take("a") is None
