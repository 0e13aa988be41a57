"""The blob endpoints: restartable uploads, ranged downloads, never a whole file in memory.

An upload is addressed by the digest the client computed first, so a dropped connection is
resumed by asking how much arrived (`GET /blobs/{digest}/upload`) and sending the rest with
`PUT /blobs/{digest}?size=TOTAL&offset=RECEIVED`. The master hashes the upload once it is
complete and keeps it only if it matches its name. Downloads honour `Range: bytes=N-`, so a
reader resumes the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from ffleet.blobs import CHUNK_BYTES, BlobCorrupt, BlobError, BlobStore, check_digest, make_ref
from ffleet.master.http import ApiError, JsonResponse, query_int

log = logging.getLogger("ffleet.master")

_RANGE = re.compile(r"^bytes=(\d+)-$")


class BlobRoutes:
    """Routes over one `BlobStore`; `max_bytes` bounds any single blob."""

    def __init__(self, store: BlobStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._uploading: set[str] = set()  # one writer per digest at a time

    @staticmethod
    def _digest(request: Request) -> str:
        try:
            return check_digest(request.path_params["digest"])
        except BlobError as exc:
            raise ApiError(400, str(exc)) from None

    async def upload_state(self, request: Request) -> Response:
        digest = self._digest(request)
        size = self.store.size(digest)
        received = size if size is not None else self.store.received(digest)
        return JsonResponse({"digest": digest, "complete": size is not None, "received": received})

    async def upload(self, request: Request) -> Response:
        """Append the body at `offset` (the bytes received so far) of a `size`-byte blob."""
        digest = self._digest(request)
        total = query_int(request, "size", None, low=0, high=2**62)
        if total is None:
            raise ApiError(400, "query parameter size (the blob's full size in bytes) is required")
        if total > self.max_bytes:
            raise ApiError(413, f"a blob of {total} bytes exceeds the {self.max_bytes}-byte limit")
        existing = self.store.size(digest)
        if existing is not None:
            return JsonResponse({"ref": make_ref(digest), "size": existing})
        if digest in self._uploading:
            raise ApiError(409, f"sha256:{digest} is being uploaded by another request")
        self._uploading.add(digest)
        try:
            return await self._receive(request, digest, total)
        finally:
            self._uploading.discard(digest)

    async def _receive(self, request: Request, digest: str, total: int) -> Response:
        received = self.store.received(digest)
        offset = query_int(request, "offset", 0, low=0, high=2**62)
        if offset != received:
            message = f"upload of sha256:{digest} continues at {received}"
            return JsonResponse({"error": message, "received": received}, status_code=409)
        part = self.store.open_part(digest)
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > total:
                    raise ApiError(400, f"the upload is longer than its declared {total} bytes")
                part.write(chunk)
        except ClientDisconnect:
            log.info("upload of sha256:%s dropped at %d of %d bytes", digest, received, total)
            return JsonResponse({"received": received})
        finally:
            part.close()
        if received < total:
            return JsonResponse({"received": received})
        try:
            size = await anyio.to_thread.run_sync(self.store.commit, digest)
        except BlobCorrupt as exc:
            raise ApiError(422, str(exc)) from None
        log.info("blob sha256:%s stored (%d bytes)", digest, size)
        return JsonResponse({"ref": make_ref(digest), "size": size}, status_code=201)

    async def download(self, request: Request) -> Response:
        digest = self._digest(request)
        size = self.store.size(digest)
        if size is None:
            raise ApiError(404, f"no blob sha256:{digest}")
        start = 0
        status = 200
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{digest}"'}
        wanted = request.headers.get("range")
        if wanted:
            match = _RANGE.match(wanted.strip())
            if match is None:
                raise ApiError(416, "only Range: bytes=N- is served")
            start = int(match.group(1))
            if start > size:
                raise ApiError(416, f"range starts past the blob's {size} bytes")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{max(start, size - 1)}/{size}"
        headers["Content-Length"] = str(size - start)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return StreamingResponse(
            self._chunks(digest, start),
            status_code=status,
            headers=headers,
            media_type="application/octet-stream",
        )

    def _chunks(self, digest: str, start: int) -> Iterator[bytes]:
        """Read in a worker thread by Starlette (a sync iterator), one chunk at a time."""
        with self.store.open_read(digest, start) as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    async def sweeper(self, retention_s: float, interval_s: float) -> None:
        """Delete blobs unused for `retention_s`, every `interval_s`, while the app runs."""
        import time

        from ffleet.blobs import sweep

        while True:
            await asyncio.sleep(interval_s)
            try:
                gone = await anyio.to_thread.run_sync(sweep, self.store, retention_s, time.time())
            except OSError:
                log.exception("blob sweep failed; will try again")
                continue
            for digest in gone:
                log.info("blob sha256:%s deleted: unused past its retention", digest)
