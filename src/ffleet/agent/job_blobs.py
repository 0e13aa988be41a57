"""A job's files on an agent without shared storage: a blob input comes from the cache, a kept
output goes back to the master as a blob and leaves the agent's disk.

An output the master could not take (unreachable, or a v1.0 master without blobs) stays in
`<work dir>/outputs/`, which is bounded: past `keep_bytes` the oldest kept outputs are removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

from ffleet.agent.blob_cache import BlobCache
from ffleet.agent.client import MasterClient
from ffleet.agent.executor import Execution
from ffleet.blobs import BlobError, is_ref, parse_ref
from ffleet.scenarios import JobSpec

log = logging.getLogger(__name__)


class JobBlobs:
    def __init__(
        self, client: MasterClient, cache: BlobCache, outputs_dir: Path, keep_bytes: int
    ) -> None:
        self.client = client
        self.cache = cache
        self.outputs_dir = outputs_dir
        self.keep_bytes = keep_bytes

    @contextlib.contextmanager
    def input_of(self, spec: JobSpec) -> Iterator[JobSpec]:
        """`spec` with a blob input replaced by its cached file (held for the job's length).
        BlobError when the blob cannot be fetched."""
        if spec.input is None or not is_ref(spec.input):
            yield spec
            return
        digest = parse_ref(spec.input)
        with self.cache.holding(digest, self.client.download_blob) as path:
            yield dataclasses.replace(spec, input=str(path))

    def deliver(self, job_id: str, execution: Execution) -> Execution:
        """Upload a completed job's kept output; record its reference as `output_blob`."""
        metrics = execution.metrics
        kept = metrics.get("output_path")
        if execution.status != "completed" or not isinstance(kept, str):
            metrics.setdefault("output_blob", None)
            return execution
        path = Path(kept)
        try:
            metrics["output_blob"] = self.client.upload_blob(path)
        except BlobError as exc:
            log.warning("job %s: output not uploaded (%s); kept on this node", job_id, exc)
            metrics["output_blob"] = None
            _unavailable(metrics)["output_blob"] = f"upload failed: {exc}"
            metrics["output_path"] = str(self._keep(path, job_id))
            return execution
        path.unlink(missing_ok=True)
        metrics["output_path"] = None
        _unavailable(metrics)["output_path"] = "uploaded to the master as output_blob"
        return execution

    def _keep(self, path: Path, job_id: str) -> Path:
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        kept = self.outputs_dir / f"{job_id}{path.suffix}"
        path.replace(kept)
        entries = sorted(
            (p.stat().st_mtime, p.stat().st_size, p) for p in self.outputs_dir.iterdir()
        )
        total = sum(size for _, size, _ in entries)
        for _, size, old in entries:
            if total <= self.keep_bytes or old == kept:
                break
            log.warning("removing kept output %s: outputs exceed %d bytes", old, self.keep_bytes)
            old.unlink(missing_ok=True)
            total -= size
        return kept


def _unavailable(metrics: dict[str, object]) -> dict[str, object]:
    reasons = metrics.setdefault("unavailable", {})
    assert isinstance(reasons, dict)
    return reasons
