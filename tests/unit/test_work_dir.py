"""The work dir: one agent at a time, and a node id that outlives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffleet.agent.work_dir import WorkDirInUse, lock_work_dir, read_node_id, write_node_id


def test_a_second_agent_cannot_take_a_held_work_dir(tmp_path: Path) -> None:
    held = lock_work_dir(tmp_path)
    with pytest.raises(WorkDirInUse, match="already using"):
        lock_work_dir(tmp_path)
    held.close()
    lock_work_dir(tmp_path).close()  # free again once the first agent is gone


def test_the_node_id_is_made_once_and_kept(tmp_path: Path) -> None:
    first = read_node_id(tmp_path)

    assert read_node_id(tmp_path) == first
    assert (tmp_path / "node-id").read_text() == first + "\n"


def test_an_assigned_node_id_replaces_the_kept_one(tmp_path: Path) -> None:
    read_node_id(tmp_path)

    write_node_id(tmp_path, "node-from-master")

    assert read_node_id(tmp_path) == "node-from-master"
    assert [path.name for path in tmp_path.iterdir()] == ["node-id"]  # no temp file left


def test_an_empty_node_id_file_gets_a_new_id(tmp_path: Path) -> None:
    (tmp_path / "node-id").write_text("\n")

    assert read_node_id(tmp_path).strip()
