"""Atomic writes leave either the old file or the complete new one."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from hrrkit.utils.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    current_umask,
    remove_stale_temporaries,
)


def test_write_and_replace(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temporary left behind


def test_failure_keeps_old_file_and_removes_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_owner_tagged_temporary_is_named_for_cleanup_and_keeps_umask_mode(tmp_path):
    target = tmp_path / "entry.bin"
    seen = []
    with atomic_path(target, tmp_prefix=".tmp-") as tmp:
        seen.append(tmp.name)
        tmp.write_bytes(b"data")
    host, pid, token = seen[0][len(".tmp-") :].rsplit("-", 2)
    assert (host, pid) == (socket.gethostname(), str(os.getpid())) and len(token) == 8
    assert target.read_bytes() == b"data"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    with pytest.raises(ValueError, match="tmp_prefix"):
        atomic_write_bytes(target, b"x", tmp_prefix="a/b")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_honour_the_umask_and_replacements_keep_their_mode(tmp_path, umask):
    """Reports, scores and checkpoints get what ``open(path, "w")`` would give, not mkstemp's 0600."""
    before = os.umask(umask)
    try:
        assert current_umask() == umask
        written = {
            "default": atomic_write_text(tmp_path / "report.md", "x"),
            "tagged": atomic_write_bytes(tmp_path / "entry.bin", b"x", tmp_prefix=".tmp-"),
            # a writer that removes and re-creates the temporary (as some savers do) gets the same mode
            "recreated": atomic_write_with(tmp_path / "w.bin", lambda t: (t.unlink(), t.write_bytes(b"x"))),
        }
        for how, path in written.items():
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, how
        os.chmod(written["default"], 0o640)
        atomic_write_text(written["default"], "y")
        assert stat.S_IMODE(written["default"].stat().st_mode) == 0o640 and written["default"].read_text() == "y"
    finally:
        os.umask(before)


def test_remove_stale_temporaries_removes_only_dead_writers_on_this_host(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = socket.gethostname()
    (tmp_path / "sub").mkdir()
    stale = tmp_path / "sub" / f".tmp-{host}-{dead_pid}-deadbeef"
    live = tmp_path / f".tmp-{host}-{os.getpid()}-cafecafe"
    other_host = tmp_path / f".tmp-not-{host}-{dead_pid}-deadbeef"
    unrelated = tmp_path / ".tmp-notes"
    for path in (stale, live, other_host, unrelated):
        path.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path, ".tmp-") == 1
    assert not stale.exists() and live.exists() and other_host.exists() and unrelated.exists()
