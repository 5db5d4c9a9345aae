"""Build (or reuse) the wild benchmark: real generators' outputs vs held-out photographs, offline.

:func:`build_wild_benchmark` writes, under one folder per (mode, seed, recipe)::

    <root>/<key>/
        manifest.csv        path,label,generator,split,source,scene,crop,native_height,native_width,
                            history,height,width,seed,origin_sha256,sha256 (crop: where a real
                            crop, or the crop a fake regenerates, was cut; history: WebP quality)
        build.json          config, cache-key inputs, counts, timings, versions; written last, so its
                            presence marks a complete build
        train/real/00000.png
        train/fake/realesrgan-x4plus/00000.png ...
        test_generators/fake/flux1-dev/00003.png ...

``manifest.csv`` is readable by :func:`hrrkit.data.layouts.read_csv_manifest` (so by every hrrkit
command that takes a CSV manifest); :meth:`WildBenchmark.samples` returns the ``Sample`` objects.

Splits:

===================  =======================================  ==========================================
split                real images                              generated images
===================  =======================================  ==========================================
``train``            crops of ``train``-role photographs      content-matched regenerations of those
                     (not :data:`VAL_SCENES`)                 very crops (:mod:`.wild_regenerators`)
``val``              crops of :data:`VAL_SCENES`              regenerations of those crops
``test_generators``  crops of ``test``-role photographs       text-to-image outputs of real generators
                                                              (:data:`.wild_templates.TEXT_TO_IMAGE`)
``test_edited``      other crops of ``test``-role photos      image-edit outputs (:data:`.wild_templates.EDITED`)
===================  =======================================  ==========================================

No source photograph (scene) is in two of train / val / test; the two test splits share the
held-out photographs (never seen in training). No real generator's output is in train or val.

**Equal processing.** Every image of every split takes the same chain, so size, format and
compression history tell nothing:

1. a square *native* image of side ``P``: a real crop, a regenerated crop, or a thumbnail as shipped;
2. a WebP compression history at ``P``: the thumbnails already have one (the package ships WebP);
   every other image is WebP-encoded and decoded once at a quality drawn from
   :data:`HISTORY_QUALITY`;
3. Lanczos resize to ``size x size`` (default 128) and PNG (lossless, no metadata, sRGB).

Inside a split both classes have the same distribution of ``P``: in train/val ``P = 2 * size`` for both
(regenerators return crops of the crop's size); in the test splits each real crop takes ``P`` from the
thumbnail it is paired with (capped at the photograph's short side, never upsampled).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hrrkit.datasets import wild_regenerators
from hrrkit.datasets._files import write_build_record, write_manifest_csv
from hrrkit.datasets.mini import _remove_tree, _sha256, _verify, default_cache_root
from hrrkit.datasets.sources import MIN_CROP_STD, _resize_short_side
from hrrkit.datasets.wild_templates import EDITED, TEXT_TO_IMAGE, Thumbnail, decode_rgb, load_thumbnail
from hrrkit.retrospect.photos import (
    PhotoUnavailableError,
    SourcePhoto,
    catalogue_digest,
    load_source_photograph,
    source_photographs,
    user_photographs,
)

__all__ = [
    "FULL",
    "HISTORY_QUALITY",
    "QUICK",
    "RECIPE_VERSION",
    "SPLITS",
    "VAL_SCENES",
    "WildBenchmark",
    "WildConfig",
    "build_wild_benchmark",
    "default_wild_root",
    "finalize",
    "sample_figure",
]

#: Bump when anything that changes the bytes of a build changes (part of the cache key).
RECIPE_VERSION = 4

SPLITS = ("train", "val", "test_generators", "test_edited")

#: ``train``-role scenes held out of ``train`` for ``val`` (a cat's face and a rocket launch: one
#: close-up of fur, one outdoor scene with sky and smoke).
VAL_SCENES = ("chelsea", "rocket")

#: Inclusive range of the WebP quality of the compression history (step 2 of the chain).
HISTORY_QUALITY = (75, 95)

#: A test split's real crop has a side between ``P / TEST_CROP_SHRINK`` and ``P`` (``P``: its paired
#: thumbnail's side): three held-out photographs of ~400-600 pixels give varied crops only so.
TEST_CROP_SHRINK = 2

_MAX_REDRAWS = 64
_MANIFEST_COLUMNS = (
    "path", "label", "generator", "split", "source", "scene", "crop", "native_height", "native_width",
    "history", "height", "width", "seed", "origin_sha256", "sha256",
)


@dataclass(frozen=True)
class WildConfig:
    """What a build contains.

    Attributes:
        size: side of every final image (pixels).
        train_per_generator: ``{regenerator: fakes}`` in ``train`` (each with its paired real crop).
        val_per_generator: the same for ``val``.
        test_generators: how many of the reviewed text-to-image thumbnails (``None``: all), each
            paired with one real crop.
        test_edited: how many of the reviewed edit thumbnails (``None``: all).
        history_quality: WebP quality range of the compression history.
        train_native: side ``P`` of the train/val crops before the chain (default ``2 * size``): the
            regenerators work at ``P`` and the chain downscales both classes by ``P / size``, so a
            super-resolved fake is as sharp at ``size`` as a real crop (at ``P = size`` the upscaled
            fakes are visibly softer, a cue that would not transfer to other generators).
        short_side_max: a train/val crop is cut after resizing its photograph so that the short side is
            log-uniform in ``[train_native, short_side_max]`` (capped at the photograph's own).
    """

    size: int = 128
    train_per_generator: dict[str, int] = field(default_factory=dict, hash=False)
    val_per_generator: dict[str, int] = field(default_factory=dict, hash=False)
    test_generators: int | None = None
    test_edited: int | None = None
    history_quality: tuple[int, int] = HISTORY_QUALITY
    train_native: int | None = None
    short_side_max: int = 640

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {self.size}")
        for split, counts in (("train", self.train_per_generator), ("val", self.val_per_generator)):
            unknown = set(counts) - set(wild_regenerators.REGENERATORS)
            if unknown:
                raise ValueError(
                    f"{split}: unknown regenerators {sorted(unknown)}; registered: {sorted(wild_regenerators.REGENERATORS)}"
                )
            if any(n < 0 for n in counts.values()):
                raise ValueError(f"{split}: counts must be non-negative, got {counts}")
        for name, count, pool in (("test_generators", self.test_generators, TEXT_TO_IMAGE),
                                  ("test_edited", self.test_edited, EDITED)):
            if count is not None and not 0 <= count <= len(pool):
                raise ValueError(f"{name} must be in 0..{len(pool)} (or None for all), got {count}")
        low, high = self.history_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"history_quality must be a range within 1..100, got {self.history_quality}")
        if self.native < self.size:
            raise ValueError(f"train_native ({self.native}) must be at least size ({self.size}): never upsample")
        if self.short_side_max < self.native:
            raise ValueError(f"short_side_max ({self.short_side_max}) must be at least train_native ({self.native})")

    @property
    def native(self) -> int:
        """The train/val crop side ``P`` (``train_native``, default ``2 * size``)."""
        return self.train_native if self.train_native is not None else 2 * self.size

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


#: ``quick=False``: 5 Real-ESRGAN regenerators (and the shipped diffusion ones when present); counts chosen so the build fits 4 minutes on 2 busy
#: cores (x4plus, the 23-block RRDBNet, costs ~10x the others; docs/wild_benchmark_v1.md has timings).
FULL = WildConfig(
    train_per_generator={
        "realesrgan-x4plus": 12,
        "realesrgan-x4plus-anime": 24,
        "realesr-animevideov3-x2": 32,
        "realesr-animevideov3-x3": 32,
        "realesr-animevideov3-x4": 32,
        # hrrkit's real-photograph diffusion model, once its weights are shipped (wild_regenerators)
        **{name: 8 for name in wild_regenerators.SHIPPED_REGENERATORS},
    },
    val_per_generator={
        "realesrgan-x4plus": 4,
        "realesrgan-x4plus-anime": 8,
        "realesr-animevideov3-x2": 8,
        "realesr-animevideov3-x3": 8,
        "realesr-animevideov3-x4": 8,
        **{name: 2 for name in wild_regenerators.SHIPPED_REGENERATORS},
    },
)
#: ``quick=True`` (tests, ``--quick`` demos): the cheap SRVGG regenerators only, 8 + 4 thumbnails.
QUICK = WildConfig(
    size=64,
    train_per_generator={"realesr-animevideov3-x2": 4, "realesr-animevideov3-x4": 4},
    val_per_generator={"realesr-animevideov3-x3": 2, "realesr-animevideov3-x4": 2},
    test_generators=8,
    test_edited=4,
    short_side_max=320,
)


def default_wild_root() -> Path:
    """``wild-benchmark`` beside the mini-benchmark's cache (``$HRRKIT_CACHE``, ``$XDG_CACHE_HOME/hrrkit``, ``~/.cache/hrrkit``)."""
    return default_cache_root().with_name("wild-benchmark")


# --------------------------------------------------------------------------------------------------
# the common final chain
# --------------------------------------------------------------------------------------------------


def _webp_roundtrip(pixels: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="WEBP", quality=quality, method=4)
    return decode_rgb(buffer.getvalue(), "webp history")


def finalize(native: np.ndarray, history_quality: int | None, size: int) -> bytes:
    """The chain every image ends with: ``uint8 (P, P, 3)`` → PNG bytes of ``size x size``.

    ``history_quality`` is the WebP quality of the compression history, or ``None`` for an image that
    already has one (a shipped WebP thumbnail). Then Lanczos resize to ``size`` (if ``P != size``) and
    PNG without metadata.
    """
    from PIL import Image

    if native.ndim != 3 or native.shape[2] != 3 or native.shape[0] != native.shape[1] or native.dtype != np.uint8:
        raise ValueError(f"finalize takes a square uint8 (P, P, 3) image, got {native.dtype} {native.shape}")
    if history_quality is not None:
        native = _webp_roundtrip(native, history_quality)
    image = Image.fromarray(native, mode="RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Crop:
    photo: str  # SourcePhoto.name
    short_side: int
    top: int
    left: int
    side: int
    flip: bool

    def to_text(self) -> str:
        """The manifest's ``crop`` cell: ``<photo>@short<S>+<top>+<left>/<side>[/flip]``."""
        return f"{self.photo}@short{self.short_side}+{self.top}+{self.left}/{self.side}" + ("/flip" if self.flip else "")

    @classmethod
    def from_text(cls, text: str) -> _Crop:
        photo, rest = text.split("@short", 1)
        parts = rest.split("/")
        short_side, top, left = (int(v) for v in parts[0].split("+"))
        return cls(photo, short_side, top, left, int(parts[1]), len(parts) > 2 and parts[2] == "flip")


@dataclass(frozen=True)
class _Item:
    split: str
    label: int
    generator: str | None
    index: int
    seed: int
    scene: str
    source: str
    crop: _Crop | None = None
    thumbnail: Thumbnail | None = None
    history_quality: int | None = None

    @property
    def relpath(self) -> str:
        folder = f"{self.split}/real" if self.label == 0 else f"{self.split}/fake/{self.generator}"
        return f"{folder}/{self.index:05d}.png"


def _pools(real_dirs: Sequence[str | os.PathLike] | None) -> dict[str, list[SourcePhoto]]:
    # a user's copy of a catalogue photograph keeps the catalogue's role (it is the same picture)
    catalogued = {p.sha256 for p in source_photographs(None)}
    users = [p for p in user_photographs(real_dirs) if p.sha256 not in catalogued]
    train = [p for p in source_photographs("train") if p.scene not in VAL_SCENES]
    val = [p for p in source_photographs("train") if p.scene in VAL_SCENES]
    test = list(source_photographs("test"))
    train += [p for p in users if p.role == "train"]
    test += [p for p in users if p.role == "test"]
    return {"train": train, "val": val, "test_generators": test, "test_edited": test}


@functools.lru_cache(maxsize=256)
def _resized(photo: SourcePhoto, short_side: int) -> np.ndarray:
    pixels = load_source_photograph(photo)
    if short_side == min(pixels.shape[:2]):
        return pixels
    return _resize_short_side(pixels, short_side)


def _render_crop(crop: _Crop, photos: dict[str, SourcePhoto]) -> np.ndarray:
    resized = _resized(photos[crop.photo], crop.short_side)
    window = resized[crop.top : crop.top + crop.side, crop.left : crop.left + crop.side]
    if window.shape[:2] != (crop.side, crop.side):
        raise ValueError(f"{crop}: the window leaves the resized photograph of shape {resized.shape[:2]}")
    return np.ascontiguousarray(window[:, ::-1] if crop.flip else window)


def _draw_crop(rng: np.random.Generator, scene_photos: list[SourcePhoto], sides: tuple[int, int], short_max: int,
               photos: dict[str, SourcePhoto]) -> _Crop:
    """A square crop from one photograph of a scene, at a log-uniform scale.

    The crop's side is log-uniform in ``sides`` (capped at the photograph's short side: a photograph is
    never upsampled); the photograph is resized so that its short side is log-uniform in
    ``[side, min(short_max, own short side)]`` and the window cut at a random place. Nearly flat
    windows are redrawn.
    """

    def log_uniform(low: int, high: int) -> int:
        return low if high <= low else int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))

    for _ in range(_MAX_REDRAWS):
        photo = scene_photos[int(rng.integers(len(scene_photos)))]
        own = min(load_source_photograph(photo).shape[:2])
        side = min(log_uniform(*sides), own)
        short_side = min(max(log_uniform(side, min(short_max, own)), side), own)
        resized = _resized(photo, short_side)
        top = int(rng.integers(resized.shape[0] - side + 1))
        left = int(rng.integers(resized.shape[1] - side + 1))
        crop = _Crop(photo.name, short_side, top, left, side, bool(rng.integers(2)))
        if float(_render_crop(crop, photos).astype(np.float32).mean(axis=2).std()) >= MIN_CROP_STD:
            return crop
    raise RuntimeError(f"no textured window of {sides} pixels found in {_MAX_REDRAWS} draws")  # pragma: no cover


def _by_scene(pool: list[SourcePhoto]) -> list[list[SourcePhoto]]:
    scenes: dict[str, list[SourcePhoto]] = {}
    for photo in pool:
        scenes.setdefault(photo.scene, []).append(photo)
    return [scenes[name] for name in sorted(scenes)]


def _item_rng(seed: int, *key: int) -> tuple[int, np.random.Generator]:
    state = np.random.SeedSequence(seed, spawn_key=key)
    return int(state.generate_state(1, dtype=np.uint32)[0]), np.random.default_rng(state)


def _plan(config: WildConfig, seed: int, pools: dict[str, list[SourcePhoto]]) -> list[_Item]:
    photos = {p.name: p for pool in pools.values() for p in pool}
    low, high = config.history_quality
    items: list[_Item] = []
    for split_index, split in enumerate(SPLITS):
        scenes = _by_scene(pools[split])
        if not scenes:
            raise PhotoUnavailableError(f"{split}: no source photographs (see hrrkit.retrospect.photos)")
        if split in ("train", "val"):
            counts = config.train_per_generator if split == "train" else config.val_per_generator
            pairs = [(name, i) for name in sorted(counts) for i in range(counts[name])]
            sizes = [config.native] * len(pairs)
            fakes: list[tuple[str, Thumbnail | None]] = [(name, None) for name, _ in pairs]
        else:
            pool = TEXT_TO_IMAGE if split == "test_generators" else EDITED
            count = config.test_generators if split == "test_generators" else config.test_edited
            listed = list(pool.values())
            # a partial selection is spread evenly over the list (so over the generator families)
            picks = range(len(listed)) if count is None else np.linspace(0, len(listed) - 1, count).round().astype(int)
            chosen = [listed[int(i)] for i in picks]
            sizes = [load_thumbnail(t).shape[0] for t in chosen]
            fakes = [(t.generator, t) for t in chosen]
        for index, ((generator, thumb), side) in enumerate(zip(fakes, sizes)):
            real_seed, rng = _item_rng(seed, split_index, 0, index)
            scene = scenes[index % len(scenes)]
            if thumb is None:  # train/val: the regenerators keep the crop's size, so P is the same for both classes
                crop = _draw_crop(rng, scene, (side, side), config.short_side_max, photos)
            else:  # test: P from the paired thumbnail, down to half of it for varied framing of 3 photographs
                crop = _draw_crop(rng, scene, (max(config.size, side // TEST_CROP_SHRINK), side), 10**6, photos)
            quality = int(rng.integers(low, high + 1))
            photo = photos[crop.photo]
            items.append(_Item(split, 0, None, index, real_seed, photo.scene, f"{photo.package}:{photo.name}",
                               crop=crop, history_quality=quality))
            fake_seed, fake_rng = _item_rng(seed, split_index, 1, index)
            if thumb is None:
                # the fake regenerates the very crop of its paired real image
                items.append(_Item(split, 1, generator, index, fake_seed, photo.scene, f"{photo.package}:{photo.name}",
                                   crop=crop, history_quality=int(fake_rng.integers(low, high + 1))))
            else:
                items.append(_Item(split, 1, generator, index, fake_seed, f"comfyui:{thumb.template}",
                                   f"comfyui:{thumb.template}", thumbnail=thumb))
    return items


# --------------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------------


@dataclass
class WildBenchmark:
    """A complete wild benchmark on disk.

    Attributes:
        root: the build's folder; manifest: ``root / "manifest.csv"``; key: the folder name;
        config, seed: what was built; reused: a verified cached build was reused;
        seconds: time this call took; info: ``build.json``.
    """

    root: Path
    manifest: Path
    key: str
    config: WildConfig
    seed: int
    reused: bool
    seconds: float
    info: dict[str, Any]

    def records(self, split: str | None = None) -> list[dict[str, str]]:
        """The manifest rows (all columns, as strings), optionally of one split."""
        with open(self.manifest, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return rows if split is None else [r for r in rows if r["split"] == _check_split(split)]

    def samples(self, split: str | None = None):
        """``hrrkit.data.layouts.Sample`` objects (absolute paths), optionally of one split."""
        from hrrkit.data.layouts import read_csv_manifest

        samples = read_csv_manifest(self.manifest)
        return samples if split is None else [s for s in samples if s.split == _check_split(split)]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {generator or "real": n}}``."""
        out: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
        for row in self.records():
            name = row["generator"] if row["label"] == "1" else "real"
            out[row["split"]][name] = out[row["split"]].get(name, 0) + 1
        return out

    def reproduce(self, record: dict[str, str], *, real_dirs: Sequence[str | os.PathLike] | None = None) -> bytes:
        """The PNG bytes of a manifest row made again from what the row records.

        A real crop is cut again from its photograph (``crop``) and passed through the chain with its
        ``history`` quality; a thumbnail is read again; a regenerated fake runs its regenerator on
        its crop alone (batched float rounding may then differ from the build in the last bit on
        some CPUs; reals and thumbnails are byte-exact). A user photograph needs ``real_dirs``.
        """
        photos = {p.name: p for p in source_photographs(None)}
        photos.update({p.name: p for p in user_photographs(real_dirs)})
        history = None if record["history"] == "shipped-webp" else int(record["history"].removeprefix("webp-q"))
        if record["source"].startswith("comfyui:"):
            pool = TEXT_TO_IMAGE if record["split"] == "test_generators" else EDITED
            return finalize(_square(load_thumbnail(pool[record["source"].split(":", 1)[1]])), None, self.config.size)
        crop = _Crop.from_text(record["crop"])
        if crop.photo not in photos:
            raise KeyError(f"{record['path']}: photograph {crop.photo!r} is not in the catalogue; pass the real_dirs it came from")
        native = _render_crop(crop, photos)
        if record["label"] == "1":
            rng = np.random.default_rng(np.random.SeedSequence([int(record["seed"])]))
            native = wild_regenerators.regenerate(record["generator"], native[None], rng)[0]
        return finalize(native, history, self.config.size)

    def verify(self) -> list[str]:
        """Problems on disk (missing files, SHA-256 mismatches, a scene in two splits); [] if none."""
        return _verify(self.root) + _check_disjoint(self.records())


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; the splits are {list(SPLITS)}")
    return split


def _check_disjoint(rows: list[dict[str, str]]) -> list[str]:
    """A real source in two of {train, val, test}: the leak the protocol forbids.

    Checked twice: by scene name (the stereo pair is one scene) and by the SHA-256 of the source file
    (the same photograph under two names)."""
    groups = {"train": "train", "val": "val", "test_generators": "test", "test_edited": "test"}
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for row in rows:
        if row["source"].startswith("comfyui:"):
            continue
        group = groups[row["split"]]
        for key in (("scene", row["scene"]), ("source file", row["origin_sha256"])):
            first = seen.setdefault(key, group)
            if first != group:
                problems.append(f"{key[0]} {key[1][:16]!r} is in {first} and {group} ({row['path']})")
    return problems


# --------------------------------------------------------------------------------------------------
# cache and build
# --------------------------------------------------------------------------------------------------


def _cache_inputs(config: WildConfig, seed: int, pools: dict[str, list[SourcePhoto]]) -> dict[str, Any]:
    from hrrkit.datasets.realesrgan import MODELS

    used = sorted(set(config.train_per_generator) | set(config.val_per_generator))
    photos = sorted({p.name: p for pool in pools.values() for p in pool}.values(), key=lambda p: p.name)
    return {
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "config": config.to_dict(),
        "val_scenes": list(VAL_SCENES),
        "photographs_sha256": catalogue_digest(photos),
        "thumbnails_sha256": _sha256(json.dumps({**{k: t.sha256 for k, t in TEXT_TO_IMAGE.items()},
                                                 **{k: t.sha256 for k, t in EDITED.items()}}, sort_keys=True).encode()),
        "regenerators": {name: wild_regenerators.REGENERATORS[name].to_dict() for name in used},
        "realesrgan_sha256": {name: [m.param_sha256, m.bin_sha256] for name, m in MODELS.items() if name in used},
    }


def build_wild_benchmark(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    config: WildConfig | None = None,
    real_dirs: Sequence[str | os.PathLike] | None = None,
    rebuild: bool = False,
    verify: bool = True,
) -> WildBenchmark:
    """Build the wild benchmark, or reuse a complete cached build of the same recipe, seed and mode.

    Args:
        root: parent folder of builds (default :func:`default_wild_root`); the build goes into
            ``root/<quick|full>-seed<seed>-<hash of recipe, config, photos, thumbnails, weights>``.
        seed: build seed (crops, WebP history qualities, stochastic regenerators).
        quick: the small :data:`QUICK` build (seconds) instead of :data:`FULL`.
        progress: show a tqdm progress bar.
        config: a custom :class:`WildConfig` (overrides ``quick``'s preset).
        real_dirs: folders of the user's own photographs, added to the train and test pools by the
            role their content hash gives them (:func:`hrrkit.retrospect.photos.user_photographs`).
        rebuild: discard any cached build first.
        verify: check every cached file's SHA-256 before reuse (a broken build is rebuilt).

    Raises:
        PhotoUnavailableError, ThumbnailUnavailableError, RealEsrganUnavailableError: a package of
        the ``wild`` extra is missing or one of its files changed; the message names the fix.
    """
    started = time.perf_counter()
    config = config or (QUICK if quick else FULL)
    pools = _pools(real_dirs)
    inputs = _cache_inputs(config, seed, pools)
    key = f"{'quick' if quick else 'full'}-seed{seed}-{_sha256(json.dumps(inputs, sort_keys=True).encode())[:16]}"
    parent = Path(root).expanduser() if root is not None else default_wild_root()
    final = parent / key

    if final.exists() and not rebuild:
        problems = (_verify(final) if verify else []) or ([] if (final / "build.json").is_file() else ["incomplete"])
        if not problems:
            info = json.loads((final / "build.json").read_text())
            return WildBenchmark(final, final / "manifest.csv", key, config, seed, True, time.perf_counter() - started, info)
        if progress:
            print(f"wild-benchmark: cached build {final} is broken ({problems[0]}); rebuilding")
    _remove_tree(final)

    partial = parent / f".{key}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    published = False
    try:
        info = _build_into(partial, config, seed, pools, inputs, key, progress)
        with contextlib.suppress(OSError):  # OSError: another process published this build meanwhile
            os.replace(partial, final)
            published = True
        if not published:
            if _verify(final):
                raise RuntimeError(f"{final}: could not publish the build, and the folder there is not a sound build")
            info = json.loads((final / "build.json").read_text())
    finally:
        if not published:
            shutil.rmtree(partial, ignore_errors=True)
    return WildBenchmark(final, final / "manifest.csv", key, config, seed, False, time.perf_counter() - started, info)


def _build_into(folder: Path, config: WildConfig, seed: int, pools: dict[str, list[SourcePhoto]],
                inputs: dict[str, Any], key: str, progress: bool) -> dict[str, Any]:
    import PIL
    import torch
    from tqdm.auto import tqdm


    photos = {p.name: p for pool in pools.values() for p in pool}
    items = _plan(config, seed, pools)
    rows: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}

    def write(item: _Item, native: np.ndarray, history: int | None) -> None:
        data = finalize(native, history, config.size)
        path = folder / item.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        origin = item.thumbnail.sha256 if item.thumbnail else photos[item.crop.photo].sha256
        rows[item.relpath] = {
            "path": item.relpath, "label": item.label, "generator": item.generator or "", "split": item.split,
            "source": item.source, "scene": item.scene, "crop": item.crop.to_text() if item.crop else "",
            "native_height": native.shape[0],
            "native_width": native.shape[1], "history": f"webp-q{history}" if history else "shipped-webp",
            "height": config.size, "width": config.size, "seed": item.seed, "origin_sha256": origin,
            "sha256": _sha256(data),
        }

    cpu_start = time.process_time()
    with tqdm(total=len(items), desc="wild-benchmark", unit="img", disable=not progress) as bar:
        tick = time.perf_counter()
        bar.set_postfix_str("real crops and thumbnails")
        for item in items:
            if item.label == 0:
                write(item, _render_crop(item.crop, photos), item.history_quality)
                bar.update(1)
            elif item.thumbnail is not None:
                write(item, _square(load_thumbnail(item.thumbnail)), None)
                bar.update(1)
        timings["reals_and_thumbnails_s"] = round(time.perf_counter() - tick, 2)
        regenerated = [item for item in items if item.label == 1 and item.thumbnail is None]
        for name in sorted({item.generator for item in regenerated}):
            tick = time.perf_counter()
            entry = wild_regenerators.REGENERATORS[name]
            mine = [item for item in regenerated if item.generator == name]
            bar.set_postfix_str(f"regenerating: {name}")
            for start in range(0, len(mine), entry.batch_size):
                batch = mine[start : start + entry.batch_size]
                crops = np.stack([_render_crop(item.crop, photos) for item in batch])
                rng = np.random.default_rng(np.random.SeedSequence([item.seed for item in batch]))
                for item, image in zip(batch, wild_regenerators.regenerate(name, crops, rng)):
                    write(item, image, item.history_quality)
                bar.update(len(batch))
            timings[f"regenerate_{name}_s"] = round(time.perf_counter() - tick, 2)

    # CPU seconds of this process: on a shared machine a fairer measure of the cost than wall time
    timings["process_cpu_s"] = round(time.process_time() - cpu_start, 2)
    ordered = [rows[item.relpath] for item in items]
    write_manifest_csv(folder / "manifest.csv", _MANIFEST_COLUMNS, ordered)
    problems = _check_disjoint([{k: str(v) for k, v in row.items()} for row in ordered])
    if problems:  # pragma: no cover - guarded by the plan; a failure here is a bug
        raise AssertionError(f"split leak: {problems[:3]}")
    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    for item in items:
        name = item.generator if item.label else "real"
        counts[item.split][name] = counts[item.split].get(name, 0) + 1
    # last: the presence of build.json marks a complete build
    return write_build_record(folder, key=key, inputs=inputs, images=len(items), counts=counts, timings=timings,
                              versions={"torch": torch.__version__, "pillow": PIL.__version__, "numpy": np.__version__})


def _square(pixels: np.ndarray) -> np.ndarray:
    """Centre square of an image (the shipped thumbnails are square already; a few are off by pixels)."""
    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(pixels[top : top + side, left : left + side])


def sample_figure(bench: WildBenchmark, path: str | os.PathLike, *, per_row: int = 8, seed: int = 0) -> Path:
    """Save a grid of sample images: one row per (split, class), the generator under each fake.

    Returns the path of the PNG written (matplotlib, 100 dpi).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = bench.records()
    rng = np.random.default_rng(seed)
    grid: list[tuple[str, list[dict[str, str]]]] = []
    for split in SPLITS:
        for label, title in (("0", "real"), ("1", "generated")):
            mine = [r for r in rows if r["split"] == split and r["label"] == label]
            if split in ("train", "val") and label == "1":
                # one of every regenerator first, then at random
                firsts = {r["generator"]: r for r in reversed(mine)}
                mine = list(firsts.values()) + [mine[i] for i in rng.permutation(len(mine))]
            else:
                mine = [mine[i] for i in rng.permutation(len(mine))]
            unique = list({r["path"]: r for r in mine}.values())[:per_row]
            grid.append((f"{split}\n{title}", unique))
    figure, axes = plt.subplots(len(grid), per_row, figsize=(1.6 * per_row, 1.85 * len(grid)), squeeze=False)
    for (title, chosen), row_axes in zip(grid, axes):
        for column, axis in enumerate(row_axes):
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if column == 0:
                axis.set_ylabel(title, fontsize=8)
            if column < len(chosen):
                record = chosen[column]
                with Image.open(bench.root / record["path"]) as image:
                    axis.imshow(np.asarray(image.convert("RGB")))
                caption = record["generator"] if record["label"] == "1" else record["source"].split(":", 1)[1]
                axis.set_title(caption[:28], fontsize=5.8)
    figure.tight_layout(pad=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
