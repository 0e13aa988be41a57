"""The agent's work dir: held by one agent at a time, home of the node id and credential.

The node id is stored so that a restarted agent registers as the same node (the master then
ends that node's stale attempts instead of waiting for their leases); two agents sharing one
dir would share that id, hence the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path
from typing import TextIO

_NODE_ID = "node-id"
_NODE_TOKEN = "node-token"  # the node's own credential from enrollment; mode 0600


class WorkDirInUse(Exception):
    """Another agent holds the work dir's lock."""


def lock_work_dir(work_dir: Path) -> TextIO:
    """Take an exclusive lock on `work_dir`, held until the returned file is closed."""
    handle = (work_dir / "agent.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise WorkDirInUse(f"another agent is already using the work dir {work_dir}") from None
    return handle


def read_node_id(work_dir: Path) -> str:
    """The node id kept in `<work_dir>/node-id`; a new one is made and kept on first use."""
    with contextlib.suppress(FileNotFoundError):
        stored = (work_dir / _NODE_ID).read_text(encoding="utf-8").strip()
        if stored:
            return stored
    node_id = str(uuid.uuid4())
    write_node_id(work_dir, node_id)
    return node_id


def write_node_id(work_dir: Path, node_id: str) -> None:
    """Keep `node_id` (e.g. one a v1.0 master assigned), atomically: a torn file is no id."""
    path = work_dir / _NODE_ID
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(node_id + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def read_node_token(work_dir: Path) -> str | None:
    """The node credential this agent was enrolled with, if it was."""
    with contextlib.suppress(FileNotFoundError):
        return (work_dir / _NODE_TOKEN).read_text(encoding="utf-8").strip() or None
    return None


def write_node_token(work_dir: Path, token: str) -> Path:
    """Keep the node credential, readable by this user only, atomically."""
    path = work_dir / _NODE_TOKEN
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    return path
