"""Blobs: the master's endpoints, restartable transfers, hash checks, and the agent's cache."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from ffleet import transfers
from ffleet.agent.blob_cache import BlobCache
from ffleet.blobs import BlobError, DirectoryBlobStore, make_ref, parse_ref, sweep
from ffleet.master.app import create_app
from ffleet.master.settings import MasterSettings

DATA = os.urandom(3 * 1024 * 1024 + 17)  # spans several transfer chunks
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    settings = MasterSettings(store_url="memory", blob_dir=tmp_path / "blobs", max_blob_bytes=10**7)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "input.bin"
    path.write_bytes(DATA)
    return path


def test_references_name_a_sha256_digest() -> None:
    assert parse_ref(make_ref(DIGEST)) == DIGEST
    for bad in ("sha256:" + DIGEST, "blob:sha256:" + DIGEST[:-1], "blob:sha256:" + "G" * 64):
        with pytest.raises(BlobError):
            parse_ref(bad)


def test_an_upload_cut_short_resumes_where_it_stopped(api: TestClient, tmp_path: Path) -> None:
    first = api.put(f"/blobs/{DIGEST}", params={"size": len(DATA)}, content=DATA[:1000])
    assert first.status_code == 200 and first.json() == {"received": 1000}
    state = api.get(f"/blobs/{DIGEST}/upload").json()
    assert state == {"digest": DIGEST, "complete": False, "received": 1000}
    wrong = api.put(f"/blobs/{DIGEST}", params={"size": len(DATA), "offset": 0}, content=b"x")
    assert wrong.status_code == 409 and wrong.json()["received"] == 1000
    rest = api.put(
        f"/blobs/{DIGEST}", params={"size": len(DATA), "offset": 1000}, content=DATA[1000:]
    )
    assert rest.status_code == 201 and rest.json() == {"ref": make_ref(DIGEST), "size": len(DATA)}
    assert (tmp_path / "blobs" / "sha256" / DIGEST).read_bytes() == DATA


def test_an_upload_that_does_not_match_its_name_is_discarded(api: TestClient) -> None:
    reply = api.put(f"/blobs/{DIGEST}", params={"size": 4}, content=b"evil")
    assert reply.status_code == 422 and "hashes to" in reply.json()["error"]
    assert api.get(f"/blobs/{DIGEST}/upload").json()["received"] == 0
    assert api.get(f"/blobs/{DIGEST}").status_code == 404


def test_a_blob_over_the_size_limit_is_refused_before_any_byte(api: TestClient) -> None:
    reply = api.put(f"/blobs/{DIGEST}", params={"size": 10**7 + 1}, content=b"")
    assert reply.status_code == 413


def test_upload_then_download_streams_and_verifies(
    api: TestClient, source: Path, tmp_path: Path
) -> None:
    assert transfers.upload(api, source) == make_ref(DIGEST)
    assert transfers.upload(api, source) == make_ref(DIGEST)  # already there: nothing sent
    target = transfers.download(api, DIGEST, tmp_path / "copy.bin")
    assert target.read_bytes() == DATA
    ranged = api.get(f"/blobs/{DIGEST}", headers={"Range": "bytes=100-"})
    assert ranged.status_code == 206 and ranged.content == DATA[100:]
    assert ranged.headers["content-range"] == f"bytes 100-{len(DATA) - 1}/{len(DATA)}"


def test_a_job_naming_an_unknown_blob_is_refused(api: TestClient, source: Path) -> None:
    job = {"scenario": "320x240-h264", "parameters": {"input": make_ref(DIGEST)}}
    refused = api.post("/jobs", json=job)
    assert refused.status_code == 400 and "upload it first" in refused.json()["error"]
    transfers.upload(api, source)
    assert api.post("/jobs", json=job).status_code == 201


def _serving(data_per_request: list[bytes]) -> httpx.Client:
    """A fake master answering each blob GET with the next of `data_per_request`."""
    served = iter(data_per_request)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=next(served))

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://master")


def test_a_corrupted_download_is_detected_and_fetched_again(tmp_path: Path) -> None:
    corrupt = bytearray(DATA)
    corrupt[12345] ^= 0xFF
    with _serving([bytes(corrupt), DATA]) as fake:
        target = transfers.download(fake, DIGEST, tmp_path / "input.bin")
    assert target.read_bytes() == DATA
    assert not list(tmp_path.glob(".*.part"))


def test_a_download_never_matching_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfers, "RETRY_PAUSE_S", 0.0)
    with _serving([b"wrong"] * transfers.TRIES) as fake, pytest.raises(BlobError):
        transfers.download(fake, DIGEST, tmp_path / "input.bin")
    assert not (tmp_path / "input.bin").exists()


def test_the_cache_downloads_once_and_evicts_the_least_recently_used(tmp_path: Path) -> None:
    fetched: list[str] = []

    def download(digest: str, target: Path) -> Path:
        fetched.append(digest)
        target.write_bytes(b"x" * 100)
        return target

    cache = BlobCache(tmp_path / "cache", max_bytes=250)
    a, b, c = ("a" * 64, "b" * 64, "c" * 64)
    for digest in (a, b, a):
        with cache.holding(digest, download) as path:
            assert path.read_bytes() == b"x" * 100
    assert fetched == [a, b]  # the second use of a came from the cache
    os.utime(tmp_path / "cache" / b, (1, 1))  # b is the least recently used
    with cache.holding(c, download):
        assert cache.cached() == [a, c]


def test_a_held_blob_is_never_evicted(tmp_path: Path) -> None:
    def download(digest: str, target: Path) -> Path:
        target.write_bytes(b"x" * 100)
        return target

    cache = BlobCache(tmp_path / "cache", max_bytes=50)
    with cache.holding("a" * 64, download) as path, cache.holding("b" * 64, download):
        assert path.exists()
    assert cache.cached() == []  # over the bound once nothing holds them


def test_the_sweep_deletes_only_blobs_past_their_retention(tmp_path: Path, source: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "store")
    kept = store.put_file(source)
    old = tmp_path / "old.bin"
    old.write_bytes(b"old")
    gone = store.put_file(old)
    os.utime(store.local_path(gone), (1000, 1000))
    assert sweep(store, retention_s=60, now=2000) == [gone]
    assert store.size(kept) == len(DATA) and store.size(gone) is None
