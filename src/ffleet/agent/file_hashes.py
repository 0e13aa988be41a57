"""SHA-256 of files, computed once per version of a file.

A benchmark is only comparable when its bytes are known: the FFmpeg binary that ran and the
input file it read. Hashing a 10 GB input for every job would cost more than the job, so a
hash is kept per (path, size, modification time): a file rewritten in place gets a new mtime
and is hashed again, an unchanged one never is.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

_CHUNK = 1 << 20


class FileHashes:
    """A process-wide cache of file digests, safe to use from several job threads."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()
        self.computed = 0  # how many files were actually read (the tests check the cache)

    def sha256(self, path: Path) -> tuple[str, int]:
        """The file's hex digest and size; raises OSError when it cannot be read."""
        resolved = path.resolve()
        before = os.stat(resolved)
        key = (str(resolved), before.st_size, before.st_mtime_ns)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known, before.st_size
        digest = hashlib.sha256()
        with open(resolved, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        with self._lock:
            self._known[key] = digest.hexdigest()
            self.computed += 1
        return digest.hexdigest(), before.st_size


HASHES = FileHashes()
