"""Content-addressed blobs: files named by their SHA-256, so any node can fetch and verify them.

Inputs and outputs travel between the user, the master and the agents as blobs instead of
through shared disks. A blob is referred to as `blob:sha256:<64 hex digits>` (a job's `input`
parameter, an output in a result's metrics). The master keeps them behind `BlobStore`, a
small interface an S3-compatible store can implement as well as the directory does: uploads
arrive in parts at known offsets (S3's multipart upload), are verified against their name once
complete, and only then become readable.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeGuard

REF_PREFIX = "blob:sha256:"
CHUNK_BYTES = 1024 * 1024  # what every transfer reads and writes at a time
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """A blob reference or transfer that cannot be used; the message is for the user."""


class BlobCorrupt(BlobError):
    """The bytes received do not hash to the blob's name."""


def is_ref(text: object) -> TypeGuard[str]:
    return isinstance(text, str) and text.startswith(REF_PREFIX)


def parse_ref(text: str) -> str:
    """The hex digest of a `blob:sha256:...` reference; BlobError when it is not one."""
    if not text.startswith(REF_PREFIX):
        raise BlobError(f"{text!r} is not a blob reference (blob:sha256:<64 hex digits>)")
    return check_digest(text.removeprefix(REF_PREFIX))


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise BlobError(f"{digest!r} is not a SHA-256 digest (64 lower-case hex digits)")
    return digest


def make_ref(digest: str) -> str:
    return REF_PREFIX + check_digest(digest)


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in chunks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    last_used: float  # epoch seconds of its last upload or download


class PartWriter(Protocol):
    def write(self, data: bytes) -> object: ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    """Where the master keeps blobs. Every method is safe to call for any digest."""

    def size(self, digest: str) -> int | None:
        """The size of a complete blob, None if there is none."""
        ...

    def received(self, digest: str) -> int:
        """How many bytes of an unfinished upload are kept (0 when none)."""
        ...

    def open_part(self, digest: str) -> PartWriter:
        """Append to the unfinished upload of `digest`, from `received(digest)` on."""
        ...

    def commit(self, digest: str) -> int:
        """Verify the finished upload against its name and make it readable; its size.
        BlobCorrupt (and the upload is discarded) when the bytes hash to another name."""
        ...

    def open_read(self, digest: str, offset: int = 0) -> BinaryIO:
        """The blob's bytes from `offset`; FileNotFoundError when there is no such blob."""
        ...

    def local_path(self, digest: str) -> Path:
        """A file holding the blob, for FFmpeg to read (a cached copy for remote stores)."""
        ...

    def put_file(self, path: Path) -> str:
        """Store a local file as a blob (moving it when possible); its digest."""
        ...

    def delete(self, digest: str) -> None: ...

    def blobs(self) -> Iterator[BlobInfo]: ...

    def scratch_dir(self) -> Path:
        """A local directory for files about to become blobs (`put_file`)."""
        ...


class DirectoryBlobStore:
    """Blobs as files `<root>/sha256/<digest>`, unfinished uploads in `<root>/uploads/`.

    A shared directory (NFS) serves several masters: a commit is a rename, atomic on one
    file system, and a reader only ever sees complete, verified blobs. The directories are
    made on the first write: a master nobody uploads to leaves nothing on disk.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "sha256"
        self._uploads = root / "uploads"

    def _made(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _path(self, digest: str) -> Path:
        return self._blobs / check_digest(digest)

    def _part(self, digest: str) -> Path:
        return self._uploads / f"{check_digest(digest)}.part"

    def size(self, digest: str) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def received(self, digest: str) -> int:
        try:
            return self._part(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def open_part(self, digest: str) -> PartWriter:
        self._made(self._uploads)
        return self._part(digest).open("ab")

    def commit(self, digest: str) -> int:
        part = self._part(digest)
        actual = sha256_file(part)
        if actual != digest:
            part.unlink(missing_ok=True)
            raise BlobCorrupt(f"the upload hashes to sha256:{actual}, not sha256:{digest}")
        size = part.stat().st_size
        self._made(self._blobs)
        os.replace(part, self._path(digest))
        return size

    def open_read(self, digest: str, offset: int = 0) -> BinaryIO:
        path = self._path(digest)
        handle = path.open("rb")
        now = time.time()
        os.utime(path, (now, now))  # last use, for the retention sweep
        handle.seek(offset)
        return handle

    def local_path(self, digest: str) -> Path:
        path = self._path(digest)
        if not path.is_file():
            raise FileNotFoundError(f"no blob sha256:{digest}")
        return path

    def put_file(self, path: Path) -> str:
        digest = sha256_file(path)
        target = self._path(digest)
        if target.exists():
            path.unlink()
        else:
            self._made(self._blobs)
            os.replace(path, target)  # callers keep their files beside the store (same fs)
        return digest

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)
        self._part(digest).unlink(missing_ok=True)

    def blobs(self) -> Iterator[BlobInfo]:
        if not self._blobs.is_dir():
            return
        for path in self._blobs.iterdir():
            if _DIGEST.match(path.name):
                stat = path.stat()
                yield BlobInfo(path.name, stat.st_size, stat.st_mtime)

    def scratch_dir(self) -> Path:
        """A directory on the store's file system, so `put_file` can move instead of copy."""
        return self._made(self.root / "scratch")


def sweep(store: BlobStore, retention_s: float, now: float) -> list[str]:
    """Delete blobs neither uploaded nor read for `retention_s`; the digests deleted. A job's
    input is read when its agent fetches it, so a blob in use is never the oldest."""
    gone = []
    for info in list(store.blobs()):
        if now - info.last_used > retention_s:
            store.delete(info.digest)
            gone.append(info.digest)
    return gone
