"""Crash-safe file writes: temporary file in the target folder, fsync, rename.

A reader sees either the old file or the complete new one, never a half-written file, whatever
moment the writer is killed at. Used for checkpoints, cache entries, manifests and reports.

The file ends with the permissions a plain ``open(path, "w")`` would give it: those of the file it
replaces, or, for a new file, 0666 less the process's umask (so reports, scores and checkpoints are
readable by other users and services exactly as the umask allows; the temporary file itself is
created private, mode 0600, while it is written).

Temporary names come in two forms:

* default: ``.<name>.<random>.tmp`` from :func:`tempfile.mkstemp`;
* owner-tagged, with ``tmp_prefix=``: ``<tmp_prefix><host>-<pid>-<random8>``. A long-running writer
  that can be killed (e.g. the reconstruction cache) uses this form so that a later run can tell
  which leftovers belong to dead processes and delete them with :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, tmp_prefix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it onto ``path``.

    The caller writes the temporary file by any means (e.g. ``safetensors.torch.save_file``).
    On an exception the temporary file is removed and ``path`` is untouched.

    Args:
        tmp_prefix: ``None`` for a ``mkstemp`` name; otherwise the temporary file is named
            ``<tmp_prefix><host>-<pid>-<random8>`` (see :func:`remove_stale_temporaries`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temporary(target, tmp_prefix)
    try:
        yield tmp_path
        os.chmod(tmp_path, _final_mode(target))
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def current_umask() -> int:
    """The process's file-mode creation mask (read from ``/proc`` where possible: setting and restoring
    it with :func:`os.umask` briefly changes it for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    """Permission bits of the replaced file, else 0666 less the umask (what ``open(path, "w")`` gives)."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def _create_temporary(target: Path, tmp_prefix: str | None) -> Path:
    if tmp_prefix is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        return Path(tmp)
    if not tmp_prefix or "/" in tmp_prefix or os.sep in tmp_prefix:
        raise ValueError(f"tmp_prefix must be a non-empty file-name prefix, got {tmp_prefix!r}")
    tmp_path = target.parent / f"{tmp_prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return tmp_path


def remove_stale_temporaries(folder: str | os.PathLike, tmp_prefix: str) -> int:
    """Delete owner-tagged temporaries under ``folder`` (recursively) whose writer is gone.

    Only files named ``<tmp_prefix><host>-<pid>-<random>`` with this machine's host name and the
    id of a process that no longer exists are removed: a live writer's temporary, another host's
    (on a shared file system) and any other file are left alone. Returns how many were removed.
    """
    host = socket.gethostname()
    removed = 0
    for tmp in Path(folder).rglob(f"{tmp_prefix}*"):
        parts = tmp.name[len(tmp_prefix) :].rsplit("-", 2)  # host names may contain "-"
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        if not _pid_alive(int(parts[1])):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the directory entry is flushed (POSIX)
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, tmp_prefix: str | None = None) -> Path:
    with atomic_path(path, tmp_prefix=tmp_prefix) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, tmp_prefix: str | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), tmp_prefix=tmp_prefix)


def atomic_write_json(
    path: str | os.PathLike, payload: Any, *, indent: int | None = 2, tmp_prefix: str | None = None
) -> Path:
    """Indented JSON plus a final newline; ``Path`` → posix string, numpy/torch scalars and arrays
    → numbers and lists; anything else not serialisable raises ``TypeError`` before any write."""
    text = json.dumps(payload, indent=indent, default=_json_default) + "\n"
    return atomic_write_text(path, text, tmp_prefix=tmp_prefix)


def atomic_write_with(
    path: str | os.PathLike, writer: Callable[[Path], None], *, tmp_prefix: str | None = None
) -> Path:
    """``writer(tmp_path)`` writes the file; it then replaces ``path`` atomically."""
    with atomic_path(path, tmp_prefix=tmp_prefix) as tmp:
        writer(tmp)
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return value.as_posix()
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
