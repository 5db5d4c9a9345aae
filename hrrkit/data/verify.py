"""``hrrkit data verify``: check a data set before spending GPU hours on it.

:func:`verify_dataset` reads a layout, decodes every file under the loading policy, hashes it, and
reports:

* counts per split, label and generator;
* unreadable files with their typed error (:mod:`hrrkit.data.io`);
* **duplicates**: files with identical content. Content is the SHA-256 of the decoded RGB pixels
  and size, so a PNG saved twice with different metadata still matches; files that do not decode
  fall back to the SHA-256 of their bytes;
* **label conflicts**: identical content labelled both real and fake;
* **leaks**: identical content in the training split and in a validation/test split.

The manifest (one entry per file: path relative to the root, label, generator, split, source, byte
size, file SHA-256, pixel SHA-256, width, height, format, mode, error) is JSON written atomically.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hrrkit.data.io import ImageLoadError, MissingFileError, inspect_image, load_image
from hrrkit.data.layouts import Sample, detect_layout, read_layout
from hrrkit.utils.atomic import atomic_write_json

__all__ = ["FileRecord", "VerifyReport", "verify_dataset", "hash_file_record", "write_manifest"]

_TRAIN = {"train"}
_HELD_OUT = {"val", "valid", "validation", "test"}


@dataclass
class FileRecord:
    """What ``verify`` learnt about one file. Sizes are after EXIF rotation; ``error`` is a kind."""

    path: str
    label: int
    generator: str | None
    split: str | None
    source: str | None
    bytes: int | None = None
    sha256: str | None = None
    pixel_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    mode: str | None = None
    error: str | None = None
    reason: str | None = None

    @property
    def content_key(self) -> str | None:
        if self.pixel_sha256:
            return "pixels:" + self.pixel_sha256
        return "file:" + self.sha256 if self.sha256 else None


@dataclass
class VerifyReport:
    """The result of :func:`verify_dataset`; :meth:`to_dict` is the manifest's JSON."""

    root: str
    layout: str
    files: list[FileRecord]
    decoded: bool
    seconds: float = 0.0
    duplicates: list[list[str]] = field(default_factory=list)
    label_conflicts: list[list[str]] = field(default_factory=list)
    leaks: list[dict[str, list[str]]] = field(default_factory=list)

    @property
    def bad_files(self) -> list[FileRecord]:
        return [f for f in self.files if f.error]

    @property
    def ok(self) -> bool:
        """No unreadable files, no label conflicts and no train/test leaks (duplicates are allowed)."""
        return not self.bad_files and not self.label_conflicts and not self.leaks

    def counts(self) -> dict[str, Any]:
        """``{"total", "by_split": {split: {"real", "fake"}}, "by_generator": {split: {gen: {...}}}}``."""
        by_split: dict[str, dict[str, int]] = defaultdict(lambda: {"real": 0, "fake": 0, "unreadable": 0})
        by_generator: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: {"real": 0, "fake": 0})
        )
        for f in self.files:
            split = f.split or "-"
            kind = "fake" if f.label == 1 else "real"
            by_split[split][kind] += 1
            if f.error:
                by_split[split]["unreadable"] += 1
            by_generator[split][f.generator or "-"][kind] += 1
        return {
            "total": len(self.files),
            "by_split": {k: dict(v) for k, v in sorted(by_split.items())},
            "by_generator": {s: {g: dict(c) for g, c in sorted(v.items())} for s, v in sorted(by_generator.items())},
        }

    def to_dict(self) -> dict[str, Any]:
        from hrrkit import __version__

        return {
            "hrrkit_version": __version__,
            "root": self.root,
            "layout": self.layout,
            "decoded": self.decoded,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "counts": self.counts(),
            "bad_files": [{"path": f.path, "error": f.error, "reason": f.reason} for f in self.bad_files],
            "duplicates": self.duplicates,
            "label_conflicts": self.label_conflicts,
            "leaks": self.leaks,
            "files": [asdict(f) for f in self.files],
        }

    def summary_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the per-file list (what ``--json`` prints)."""
        out = self.to_dict()
        out.pop("files")
        return out

    def format_text(self, limit: int = 10) -> str:
        """A report for a person: counts tables, then each kind of problem with a few examples."""
        counts = self.counts()
        lines = [f"{self.root}: {self.layout} layout, {counts['total']} files ({self.seconds:.1f} s)", ""]
        lines += ["| split | real | fake | unreadable |", "|---|---:|---:|---:|"]
        for split, c in counts["by_split"].items():
            lines.append(f"| {split} | {c['real']} | {c['fake']} | {c['unreadable']} |")
        lines += ["", "| split | generator | real | fake |", "|---|---|---:|---:|"]
        for split, gens in counts["by_generator"].items():
            for gen, c in gens.items():
                lines.append(f"| {split} | {gen} | {c['real']} | {c['fake']} |")
        lines.append("")

        def section(title: str, items: Sequence[Any], show: Callable[[Any], str]) -> None:
            if not items:
                return
            lines.append(f"{title}: {len(items)}")
            lines.extend("  " + show(item) for item in items[:limit])
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more (see the manifest)")

        section("unreadable files", self.bad_files, lambda f: f"{f.path}: [{f.error}] {f.reason}")
        section("label conflicts (same content labelled real and fake)", self.label_conflicts, " = ".join)
        section("train/test leaks (same content in train and a held-out split)", self.leaks,
                lambda leak: " = ".join(leak["train"] + leak["held_out"]))  # fmt: skip
        section("duplicate groups", self.duplicates, " = ".join)
        if not self.decoded:
            lines.append("files were hashed but not decoded (--no-decode): unreadable files may be missed")
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)


def hash_file_record(sample: Sample, root: Path, *, decode: bool = True, max_pixels: Any = ...) -> FileRecord:
    """Hash and (optionally) decode one sample; never raises for bad files."""
    try:
        rel = sample.path.relative_to(root).as_posix()
    except ValueError:
        rel = sample.path.as_posix()
    record = FileRecord(rel, sample.label, sample.generator, sample.split, sample.source)
    try:
        try:
            data = sample.path.read_bytes()
        except OSError as exc:
            raise MissingFileError(sample.path, f"cannot read: {exc.strerror or exc}") from None
        record.bytes = len(data)
        record.sha256 = hashlib.sha256(data).hexdigest()
        limit = {} if max_pixels is ... else {"max_pixels": max_pixels}
        info = inspect_image(data, name=sample.path, **limit)
        record.format, record.mode = info.format, info.mode
        record.width, record.height = info.width, info.height
        if decode:
            img = load_image(io.BytesIO(data), name=sample.path, **limit)
            record.width, record.height = img.size
            pixels = np.asarray(img, dtype=np.uint8)
            digest = hashlib.sha256(f"{img.width}x{img.height}:".encode())
            digest.update(pixels.tobytes())
            record.pixel_sha256 = digest.hexdigest()
    except ImageLoadError as exc:
        record.error, record.reason = exc.kind, exc.reason
    return record


def _find_duplicates(files: Sequence[FileRecord]) -> tuple[list[list[str]], list[list[str]], list[dict]]:
    groups: dict[str, list[FileRecord]] = defaultdict(list)
    for f in files:
        key = f.content_key
        if key is not None and f.bytes:  # empty files are reported as unreadable, not as copies
            groups[key].append(f)
    duplicates, conflicts, leaks = [], [], []
    for members in groups.values():
        if len(members) < 2:
            continue
        paths = sorted(m.path for m in members)
        duplicates.append(paths)
        if len({m.label for m in members}) > 1:
            conflicts.append(paths)
        train = sorted(m.path for m in members if (m.split or "").lower() in _TRAIN)
        held_out = sorted(m.path for m in members if (m.split or "").lower() in _HELD_OUT)
        if train and held_out:
            leaks.append({"train": train, "held_out": held_out})
    return sorted(duplicates), sorted(conflicts), sorted(leaks, key=lambda leak: leak["train"])


def verify_dataset(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    decode: bool = True,
    workers: int | None = None,
    max_pixels: Any = ...,
    progress: bool | None = None,
) -> VerifyReport:
    """Read ``root`` in ``layout``, hash and decode every file, find duplicates and leaks.

    Args:
        root: a data folder or a CSV manifest.
        layout: a layout name or ``"auto"`` (see :mod:`hrrkit.data.layouts`).
        decode: decode every file (slow, complete) or only read headers and hash bytes.
        workers: threads for hashing/decoding (Pillow releases the GIL while decoding); default
            ``min(8, cpu count)``.
        max_pixels: the loader's pixel limit (default: the loading policy's).
        progress: show a tqdm bar (``None``: only on a terminal).

    Raises:
        LayoutError: the folder is missing, empty or not a recognised layout.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    root_path = Path(root)
    name = detect_layout(root_path) if layout == "auto" else layout
    samples = read_layout(root_path, name)
    base = root_path.parent if root_path.is_file() else root_path
    workers = workers or min(8, os.cpu_count() or 1)

    def work(sample: Sample) -> FileRecord:
        return hash_file_record(sample, base, decode=decode, max_pixels=max_pixels)

    disable = None if progress is None else not progress
    with tqdm(total=len(samples), desc="verify", unit="file", disable=disable) as bar:
        if workers <= 1:
            files = []
            for sample in samples:
                files.append(work(sample))
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                files = []
                for record in pool.map(work, samples):  # map keeps the input order
                    files.append(record)
                    bar.update(1)
    duplicates, conflicts, leaks = _find_duplicates(files)
    return VerifyReport(
        root=root_path.as_posix(),
        layout=name,
        files=files,
        decoded=decode,
        seconds=time.perf_counter() - start,
        duplicates=duplicates,
        label_conflicts=conflicts,
        leaks=leaks,
    )


def write_manifest(report: VerifyReport, path: str | os.PathLike) -> Path:
    """Write the full report (with every file's hashes) as JSON, atomically."""
    return atomic_write_json(path, report.to_dict())
