"""`ffleet results export`: finished jobs, with attempts and results, to a gzipped JSON Lines
file, and with `--delete-exported` out of the live database once the file is safely written.

JSON Lines in gzip, not Parquet: pyarrow is a 55 MB wheel (about 150 MB installed, three times
the rest of ffleet's dependencies together) for a file that is read rarely; every job detail is
one line exactly as `GET /jobs/{id}` shows it, so any JSON tool reads it, and DuckDB or pandas
turn it into Parquet when that is wanted. A job is deleted only after the whole file has been
written, closed and read back.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ffleet.client import FleetClient

PAGE = 500  # job details per request
PURGE_CHUNK = 10_000  # what one POST /jobs/purge accepts


def export(client: FleetClient, since: float, until: float, path: Path) -> list[str]:
    """Write every finished job completed in [since, until) to `path`; their ids, in order."""
    ids: list[str] = []
    partial = path.with_name(path.name + ".partial")
    with gzip.open(partial, "wt", encoding="utf-8") as handle:
        offset = 0
        while True:
            page = client.finished(since, until, PAGE, offset)
            for detail in page:
                handle.write(json.dumps(detail, sort_keys=True) + "\n")
                ids.append(detail["id"])
            if len(page) < PAGE:
                break
            offset += len(page)
    if [detail["id"] for detail in read_export(partial)] != ids:
        raise RuntimeError(f"{partial} does not read back as written; nothing deleted")
    partial.replace(path)
    return ids


def read_export(path: Path) -> Iterator[dict[str, Any]]:
    """The job details of an export file, in the order they were written."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def purge_exported(client: FleetClient, ids: list[str]) -> int:
    """Remove the exported jobs from the store; how many were (a retried one stays)."""
    return sum(
        client.purge(ids[start : start + PURGE_CHUNK]) for start in range(0, len(ids), PURGE_CHUNK)
    )
