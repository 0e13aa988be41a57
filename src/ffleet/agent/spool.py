"""The local result spool: a finished job's result is on disk before the master hears of it.

A result is the one thing an agent cannot recreate (the FFmpeg run is over), so it is written
atomically to `<work-dir>/spool/<job_id>-<attempt>.json` first and deleted only once the master
accepted it. A master that is down, restarting or failing keeps it spooled; it is resent when
the master answers again and on the agent's next start. A result whose reply waits for the
next job (`claim_wait`) stays here until that reply comes, though the master stored it before
it began to wait: the reply is the only word that it did (sent again, it is a duplicate). A
result the master refuses for good (409: the attempt is no longer current; 404: the master
forgot the job) is moved to `spool/rejected/` and kept for a person to look at, never
silently dropped.

A spool that cannot be written (read-only, full) must not lose results either: `probe()` tells
the agent to claim nothing while it fails, and a result that cannot be written is held in
memory, listed in heartbeats like a spooled one and resent until the master has it.

A file holds one encoded `ResultSubmission` and is read back with that type. The JSON objects
earlier agents spooled have the same fields, so they are still delivered after an upgrade.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from ffleet.agent.client import MasterRejected, MasterUnavailable, ResultReply
from ffleet.models import ProgressReport, ResultSubmission

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class ResultSender(Protocol):
    def post_result(self, result: ResultSubmission) -> ResultReply: ...


@dataclass(frozen=True)
class Delivery:
    """What became of one result: `delivered` (with the master's reply), `rejected` (moved to
    spool/rejected/), `spooled` (the master is unavailable; it stays for a later resend) or
    `held` (the same, but in memory: the spool could not be written)."""

    outcome: Literal["delivered", "rejected", "spooled", "held"]
    reply: ResultReply | None = None
    unreachable: bool = False  # spooled because no answer came at all


class Spool:
    """Results waiting for the master, one JSON file each, under `<work_dir>/spool`."""

    def __init__(self, work_dir: Path) -> None:
        self.dir = work_dir / "spool"
        self.rejected_dir = self.dir / "rejected"
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        self._resend_lock = threading.Lock()
        self._held: dict[str, ResultSubmission] = {}  # by spool file name; could not be written
        self._held_lock = threading.Lock()
        # A temporary file is a write that never completed (the agent died mid-write); its
        # result was never sent, and the job's attempt will be ended by the master.
        for stale in self.dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def attempts(self) -> list[ProgressReport]:
        """The attempts whose results wait here, for the heartbeat report (file names are
        `<job_id>-<attempt>.json`)."""
        found = []
        for path in self.pending():
            job_id, _, attempt = path.stem.rpartition("-")
            if job_id and attempt.isdigit():
                found.append(ProgressReport(job_id=job_id, attempt=int(attempt) or None))
        with self._held_lock:
            found += [
                ProgressReport(job_id=r.job_id, attempt=r.attempt) for r in self._held.values()
            ]
        return found

    def waiting(self) -> bool:
        """Whether any result waits for the master, on disk or in memory."""
        with self._held_lock:
            if self._held:
                return True
        return bool(self.pending())

    def probe(self) -> str | None:
        """Whether a result could be spooled now: write, fsync and remove a small file. None
        if it can, else why not."""
        try:
            fd, temp = tempfile.mkstemp(dir=self.dir, prefix=".probe.", suffix=".tmp")
            try:
                os.write(fd, b"ffleet spool probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(temp)
        except OSError as exc:
            return f"the result spool {self.dir} cannot be written ({exc.strerror or exc})"
        return None

    def pending(self) -> list[Path]:
        """Spooled results, oldest first."""
        found: list[tuple[int, str, Path]] = []
        for path in self.dir.glob("*.json"):
            try:  # another thread may deliver (delete) it meanwhile
                found.append((path.stat().st_mtime_ns, path.name, path))
            except FileNotFoundError:
                continue
        return [path for _, _, path in sorted(found)]

    def write(self, result: ResultSubmission) -> Path:
        """Store `result` durably (temp file, fsync, rename, fsync the directory)."""
        name = _file_name(result)
        path = self.dir / name
        fd, temp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(msgspec.json.encode(result))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.dir)
        return path

    def submit(
        self,
        sender: ResultSender,
        result: ResultSubmission,
        *,
        claim_next: bool = False,
        claim_wait: float = 0.0,
        kept: Callable[[], None] | None = None,
    ) -> Delivery:
        """Spool `result`, then send it; `claim_next` asks for the next job in the reply (the
        master waiting up to `claim_wait` s for one), but only once the result is spooled:
        that write is the proof that this node could keep the next job's result too (what
        `probe` would have checked before). `kept` is called once it is: `attempts` lists
        it from then on.

        A result that cannot be spooled (a full disk) is still sent, and held in memory until
        the master has it.
        """
        try:
            path: Path | None = self.write(result)
        except OSError as exc:
            log.error(
                "result for %s cannot be spooled (%s); sending it, and keeping it in memory "
                "until it is delivered",
                _label(result),
                exc,
            )
            return self._post(sender, result, None)
        if kept is not None:
            kept()
        wait = claim_wait if claim_next else 0.0
        return self._post(sender, result, path, claim_next=claim_next, claim_wait=wait)

    def send(self, sender: ResultSender, path: Path, *, claim_next: bool = False) -> Delivery:
        """Send one spooled result and settle its file by the master's answer."""
        try:
            result = msgspec.json.decode(path.read_bytes(), type=ResultSubmission)
        except FileNotFoundError:
            return Delivery("delivered")  # another thread delivered it meanwhile
        except (OSError, msgspec.DecodeError) as exc:
            self._reject(path, f"unreadable: {exc}")
            return Delivery("rejected")
        return self._post(sender, result, path, claim_next=claim_next)

    def _post(
        self,
        sender: ResultSender,
        result: ResultSubmission,
        path: Path | None,
        *,
        claim_next: bool = False,
        claim_wait: float = 0.0,
    ) -> Delivery:
        label = _label(result)
        sent = msgspec.structs.replace(result, claim_next=claim_next, claim_wait=claim_wait)
        try:
            reply = sender.post_result(sent)
        except MasterUnavailable as exc:
            unreachable = exc.status_code is None
            if path is None:
                log.warning("result for %s held in memory: master unavailable (%s)", label, exc)
                with self._held_lock:
                    self._held[_file_name(result)] = result
                return Delivery("held", unreachable=unreachable)
            log.warning("result for %s kept in the spool: master unavailable (%s)", label, exc)
            return Delivery("spooled", unreachable=unreachable)
        except MasterRejected as exc:
            if path is None:
                self._forget(result)
                log.warning("result for %s refused by the master (%s)", label, exc)
            else:
                self._reject(path, f"refused by the master ({exc})", label)
            return Delivery("rejected")
        self._forget(result)
        if path is not None:
            # No fsync of the directory: a delivered result that comes back after a crash is
            # sent again and answered as a duplicate, and the next job need not wait for it.
            path.unlink(missing_ok=True)
        log.info(
            "result for %s (%s) delivered%s",
            label,
            result.status,
            " (already stored)" if reply.duplicate else "",
        )
        return Delivery("delivered", reply)

    def resend(self, sender: ResultSender) -> bool:
        """Send everything spooled, oldest first. One resend runs at a time.

        Returns False, leaving the rest for later, as soon as the master cannot be reached;
        True when it answered for every result. A result it answered with a server error
        stays spooled but does not hold up the others (it may never be accepted).
        """
        with self._resend_lock:
            for path in self.pending():
                delivery = self.send(sender, path)
                if delivery.outcome == "spooled" and delivery.unreachable:
                    return False
            with self._held_lock:
                held = list(self._held.values())
            return all(not self._post(sender, result, None).unreachable for result in held)

    def _forget(self, result: ResultSubmission) -> None:
        with self._held_lock:
            self._held.pop(_file_name(result), None)

    def _reject(self, path: Path, reason: str, label: str | None = None) -> None:
        target = self.rejected_dir / path.name
        if target.exists():
            target = self.rejected_dir / f"{path.stem}-{os.urandom(4).hex()}{path.suffix}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return
        _fsync_dir(self.dir)
        log.warning("result for %s %s; kept in %s", label or path.name, reason, target)


def _file_name(result: ResultSubmission) -> str:
    return _UNSAFE.sub("_", f"{result.job_id}-{result.attempt}") + ".json"


def _label(result: ResultSubmission) -> str:
    return f"job {result.job_id} attempt {result.attempt}"


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (POSIX; a no-op where dirs can't open)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)
