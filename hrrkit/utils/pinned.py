"""Read a file whose SHA-256 was recorded when it was reviewed, failing with the fix when it differs."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["read_pinned"]


def read_pinned(path: Path, sha256: str, error: type[Exception], *, owner: str, fix: str) -> bytes:
    """The bytes of ``path`` after checking them against ``sha256``.

    Raises ``error`` naming the file, its ``owner`` (a package or folder) and ``fix`` (what to run)
    when the file is missing or its SHA-256 differs.
    """
    if not path.is_file():
        raise error(f"{path}: missing from {owner}; {fix}")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise error(f"{path}: SHA-256 {actual[:16]}... differs from the recorded {sha256[:16]}... "
                    f"(a changed or corrupted file of {owner}); {fix}")
    return data
