"""A user's own folder of real photographs or generated images, as a pool (``--real-dir``, ``--fake-dir``).

    from hrrkit.datasets.folder_pool import FolderPool
    real = FolderPool("~/photos", label=0)                          # one photo source: "user:photos"
    fake = FolderPool("~/sdxl-outputs", label=1, family="sdxl")     # one generator family

Every image file under the folder (searched recursively, hidden entries skipped, sorted) becomes a
:class:`~hrrkit.datasets.pool_record.PoolRecord` with its SHA-256 and pixel size. The whole folder is
one split unit: its photographs share the source key ``user:<folder name>`` (or ``source_key``), its
generated images share ``family``. Each file is its own ``cluster`` (its content hash), so exact
copies of one file, even under two names, always land in the same split.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hrrkit.datasets.pool_record import KIND_TO_GROUP, PoolRecord

__all__ = ["IMAGE_SUFFIXES", "FolderPool"]

#: File endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm")


@dataclass
class FolderPool:
    """The images of one folder, labelled real (0) or generated (1).

    Args:
        path: the folder (``~`` expanded).
        label: 0 = real photographs, 1 = generated images.
        family: the generator family (required for ``label=1``; the split key of the images).
        generator: the generator's name (default: ``family``).
        kind: the pool kind of generated images (default ``"t2i"``; one of
            :data:`~hrrkit.datasets.pool_record.KIND_TO_GROUP`, e.g. ``"edit"``, ``"video-frame"``).
        source_key: the split key of the folder's photographs (default ``user:<folder name>``).
        license: the licence to record (default: empty, the user's own material).

    Raises:
        FileNotFoundError: the folder does not exist. ValueError: a bad label/family/kind.
    """

    path: Path | str
    label: int
    family: str = ""
    generator: str = ""
    kind: str = ""
    source_key: str = ""
    license: str = ""
    name: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser().resolve()
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such folder")
        if self.label not in (0, 1):
            raise ValueError(f"{self.path}: label must be 0 (real) or 1 (generated), not {self.label!r}")
        if self.label == 1:
            if not self.family:
                raise ValueError(f"{self.path}: a folder of generated images needs a family name (--family NAME)")
            self.kind = self.kind or "t2i"
            if self.kind not in KIND_TO_GROUP:
                raise ValueError(f"{self.path}: unknown kind {self.kind!r} (one of {', '.join(KIND_TO_GROUP)})")
            self.generator = self.generator or self.family
        else:
            if self.family or self.generator:
                raise ValueError(f"{self.path}: real photographs have no generator family")
            self.kind = "photo"
        self.source_key = self.source_key or f"user:{self.path.name}"
        self.name = f"folder:{self.path}"

    def files(self) -> list[Path]:
        """The image files under the folder (recursive, hidden entries skipped), sorted."""
        found = []
        for folder, subfolders, names in os.walk(self.path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            found += [Path(folder) / n for n in names if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES)]
        return sorted(found)

    def records(self) -> Iterator[PoolRecord]:
        """A record per image file.

        Raises:
            ValueError: the folder holds no image file, or a file is not a readable image (the
                message names the file and the problem).
        """
        from PIL import Image, UnidentifiedImageError

        files = self.files()
        if not files:
            raise ValueError(f"{self.path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        for path in files:
            data = path.read_bytes()
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except (UnidentifiedImageError, OSError) as exc:
                raise ValueError(f"{path}: not a readable image ({exc})") from exc
            sha = hashlib.sha256(data).hexdigest()
            yield PoolRecord(
                path=path, label=self.label, kind=self.kind, source=f"user:{self.path}", source_key=self.source_key,
                generator=self.generator, family=self.family, cluster=sha[:16], license=self.license,
                registry="user", width=width, height=height, sha256=sha,
                extra={"relpath": path.relative_to(self.path).as_posix()})
