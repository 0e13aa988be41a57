"""The agent's blob cache: every input blob is downloaded once, verified, and kept for the next
job that names it, within a disk bound, the least recently used leaving first.

Files are `<cache>/<digest>`; a file's mtime is its last use. A blob a running job holds is
never evicted, so the bound can be exceeded while a job needs a blob larger than it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from ffleet.blobs import check_digest

Download = Callable[[str, Path], Path]  # (digest, target) -> target, verified


class BlobCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # guards _held and eviction
        self._fetching: dict[str, threading.Lock] = {}
        self._held: Counter[str] = Counter()

    @contextlib.contextmanager
    def holding(self, digest: str, download: Download) -> Iterator[Path]:
        """The blob's local file, fetched if missing, kept from eviction until the end."""
        check_digest(digest)
        with self._lock:
            self._held[digest] += 1
            fetch_lock = self._fetching.setdefault(digest, threading.Lock())
        try:
            with fetch_lock:  # two slots wanting one blob download it once
                path = self._get(digest, download)
            yield path
        finally:
            with self._lock:
                self._held[digest] -= 1
                if not self._held[digest]:
                    del self._held[digest]
                self._evict()

    def _get(self, digest: str, download: Download) -> Path:
        path = self.directory / digest
        if path.is_file():
            now = time.time()
            os.utime(path, (now, now))
            return path
        self.directory.mkdir(parents=True, exist_ok=True)
        download(digest, path)
        with self._lock:
            self._evict()
        return path

    def _evict(self) -> None:
        """Drop the least recently used unheld blobs until the cache fits its bound."""
        if not self.directory.is_dir():
            return
        entries = []
        for path in self.directory.iterdir():
            if path.name.startswith("."):  # a download in progress
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                return
            if path.name in self._held:
                continue
            path.unlink(missing_ok=True)
            total -= size

    def cached(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if not p.name.startswith("."))
