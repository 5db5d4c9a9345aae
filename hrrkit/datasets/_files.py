"""Small file helpers shared by the built-in datasets (mini and wild benchmarks, photo catalogue)."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["read_pinned", "write_build_record", "write_manifest_csv"]


def write_manifest_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` as a CSV with header ``columns`` atomically (a reader never sees half a manifest)."""
    from hrrkit.utils.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


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


def write_build_record(folder: Path, *, key: str, inputs: Mapping[str, Any], images: int, counts: Mapping[str, Any],
                       timings: Mapping[str, float], versions: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    """Write ``build.json`` (last step of a build: its presence marks the build complete) and return it.

    Records the cache key and its inputs, the image count (checked by ``verify``), per-split counts,
    the manifest's SHA-256, timings, library versions and torch's thread count; ``extra`` keys go
    after ``counts``.
    """
    import torch

    from hrrkit.utils.atomic import atomic_write_json

    info = {
        "key": key,
        "inputs": dict(inputs),
        "images": images,
        "counts": dict(counts),
        **extra,
        "manifest_sha256": hashlib.sha256((folder / "manifest.csv").read_bytes()).hexdigest(),
        "timings": dict(timings),
        "versions": dict(versions),
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_json(folder / "build.json", info)
    return info
