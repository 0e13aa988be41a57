"""Moving blobs to and from the master: streamed in chunks, resumed after a dropped connection,
verified by their hash at the end.

Used by `ffleet upload`/`download` and by the agents (inputs into their cache, outputs back),
always over the caller's `httpx.Client`, so a blob transfer is sent exactly like every other
request to the master (same address, same headers, same credentials).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from ffleet.blobs import CHUNK_BYTES, BlobError, make_ref, sha256_file

log = logging.getLogger(__name__)

TRIES = 5  # a transfer that fails this many times in a row gives up
RETRY_PAUSE_S = 0.5  # doubled after each failed try


def _file_chunks(path: Path, offset: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _pause(tries: int) -> None:
    time.sleep(RETRY_PAUSE_S * 2 ** (tries - 1))


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text[:200]))
    except ValueError:
        return response.text[:200]


def upload(http: httpx.Client, path: Path, *, digest: str | None = None) -> str:
    """Upload `path` and return its reference `blob:sha256:...`; a blob the master already
    holds is not sent again, and an interrupted upload continues where it stopped."""
    digest = digest or sha256_file(path)
    size = path.stat().st_size
    failures = 0
    while True:
        try:
            state = http.get(f"/blobs/{digest}/upload")
            if state.status_code != 200:
                raise BlobError(f"the master refused the upload: {_error(state)}")
            if state.json()["complete"]:
                return make_ref(digest)
            offset = int(state.json()["received"])
            reply = http.put(
                f"/blobs/{digest}",
                params={"size": str(size), "offset": str(offset)},
                content=_file_chunks(path, offset),
                headers={"Content-Type": "application/octet-stream"},
            )
        except httpx.TransportError as exc:
            failures += 1
            if failures >= TRIES:
                raise BlobError(f"upload of {path} failed {failures} times: {exc}") from exc
            log.info("upload of %s interrupted (%s); resuming", path, exc)
            _pause(failures)
            continue
        if reply.status_code in (200, 201) and "ref" in reply.json():
            return str(reply.json()["ref"])
        if reply.status_code in (200, 409):  # cut short, or another writer: ask again
            failures += 1
            if failures >= TRIES:
                raise BlobError(f"upload of {path} did not complete: {_error(reply)}")
            _pause(failures)
            continue
        raise BlobError(f"the master refused the upload of {path}: {_error(reply)}")


def download(http: httpx.Client, digest: str, target: Path) -> Path:
    """Fetch the blob into `target`, verified: resumed from what arrived after a dropped
    connection, fetched afresh when the bytes do not hash to its name."""
    part = target.with_name(f".{target.name}.part")
    failures = 0
    while True:
        try:
            _fetch(http, digest, part)
        except httpx.TransportError as exc:
            failures += 1
            if failures >= TRIES:
                raise BlobError(f"download of sha256:{digest} failed: {exc}") from exc
            log.info("download of sha256:%s interrupted (%s); resuming", digest, exc)
            _pause(failures)
            continue
        actual = sha256_file(part)
        if actual == digest:
            part.replace(target)
            return target
        part.unlink()
        failures += 1
        log.warning("download of sha256:%s hashed to %s: fetching it again", digest, actual)
        if failures >= TRIES:
            raise BlobError(f"download of sha256:{digest} never matched its hash")


def _fetch(http: httpx.Client, digest: str, part: Path) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with http.stream("GET", f"/blobs/{digest}", headers=headers) as got:
        if got.status_code == 404:
            raise BlobError(f"the master has no blob sha256:{digest}")
        if got.status_code not in (200, 206):
            got.read()
            raise BlobError(f"download of sha256:{digest} refused: {_error(got)}")
        mode = "ab" if got.status_code == 206 else "wb"  # 200: the server sent it whole
        with part.open(mode) as handle:
            for chunk in got.iter_bytes(CHUNK_BYTES):
                handle.write(chunk)
