"""Small file helpers shared by the built-in datasets (mini and wild benchmarks)."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_build_record", "write_manifest_csv"]


def write_manifest_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` as a CSV with header ``columns`` atomically (a reader never sees half a manifest)."""
    from hrrkit.utils.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


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
