"""A torch ``Dataset`` over :class:`~hrrkit.data.layouts.Sample` records, with input policies,
augmentation presets, format equalisation and report-and-skip handling of unreadable files.

Each item is decoded with :func:`hrrkit.data.io.load_image`, then, in this order:

1. **re-encoded** (``reencode="jpeg:95"``, ``"png"``, ``"webp:90"``): every image, real and fake,
   goes through the same encoder, so file format and compression history cannot be the cue;
2. **augmented** (``augment="none" | "flip" | "cnndetection" | "cnndetection-0.1"`` or an
   :class:`Augmentation`): Gaussian blur and JPEG with probabilities as in CNNDetection (Wang et
   al., 2020), and horizontal flips; randomness is a pure function of ``(seed, epoch, index)``;
3. **shaped** by the input policy: ``native`` (whole image), ``center_crop`` / ``random_crop``
   (``crop_size`` square; smaller images are padded by symmetric reflection, never upscaled) or
   ``tiles`` (a grid of ``crop_size`` tiles covering the image, at most ``max_tiles``);
4. converted to a float tensor in [-1, 1] (:func:`hrrkit.data.io.to_tensor`).

Unreadable files: by default ``__getitem__`` returns a *skip record* instead of raising, and
:func:`collate_samples` drops it from the batch and lists it in ``batch["skipped"]`` (path, error
kind, reason), so a long run never aborts for one file; :class:`SkipLog` gathers these in the main
process and writes a JSON list. ``strict=True`` raises the typed :class:`~hrrkit.data.io.ImageLoadError`.
"""

from __future__ import annotations

import io
import math
import os
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset, Sampler

from hrrkit.data.io import ImageLoadError, inspect_image, load_image
from hrrkit.data.layouts import Sample
from hrrkit.utils.atomic import atomic_write_json
from hrrkit.utils.tiling import tile_starts

__all__ = [
    "INPUT_POLICIES",
    "AUGMENTATION_PRESETS",
    "Augmentation",
    "ReEncode",
    "ImageDataset",
    "collate_samples",
    "SkipLog",
    "SizeBucketBatchSampler",
    "pad_to_min_size",
    "center_crop",
    "random_crop",
    "grid_tiles",
]

INPUT_POLICIES: tuple[str, ...] = ("native", "center_crop", "random_crop", "tiles")


# --------------------------------------------------------------------------------------------------
# format equalisation and augmentation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReEncode:
    """Encode every image with one encoder and decode it back (format equalisation).

    ``format`` is ``"JPEG"``, ``"PNG"`` or ``"WEBP"``; ``quality`` (1-100) applies to JPEG/WebP.
    JPEG always uses 4:2:0 chroma subsampling, so the only knob is the quality. Real photographs
    that were JPEGs already are compressed twice; generated PNGs once: use a quality at or below
    the reals' typical quality to make both look alike.
    """

    format: str = "JPEG"
    quality: int = 95

    def __post_init__(self) -> None:
        fmt = self.format.upper()
        if fmt == "JPG":
            fmt = "JPEG"
        if fmt not in {"JPEG", "PNG", "WEBP"}:
            raise ValueError(f"reencode format must be jpeg, png or webp, got {self.format!r}")
        object.__setattr__(self, "format", fmt)
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"reencode quality must be in 1..100, got {self.quality}")

    @classmethod
    def parse(cls, spec: str | ReEncode | None) -> ReEncode | None:
        """``"jpeg:95"``, ``"webp:90"``, ``"png"``, ``"none"``/``None``, or a ReEncode."""
        if spec is None or isinstance(spec, ReEncode):
            return spec
        text = str(spec).strip().lower()
        if text in {"", "none", "off"}:
            return None
        name, _, quality = text.partition(":")
        try:
            return cls(name, int(quality) if quality else 95)
        except ValueError as exc:
            raise ValueError(f"reencode {spec!r}: {exc} (examples: 'jpeg:95', 'webp:90', 'png')") from None

    def __call__(self, img: Image.Image) -> Image.Image:
        return _encode_decode(img, self.format, self.quality)


def _encode_decode(img: Image.Image, fmt: str, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    options: dict[str, Any] = {}
    if fmt == "JPEG":
        options = {"quality": int(quality), "subsampling": 2}
    elif fmt == "WEBP":
        options = {"quality": int(quality)}
    img.save(buffer, fmt, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert(img.mode)


@dataclass(frozen=True)
class Augmentation:
    """Random degradations applied to real and fake images alike (training only).

    Blur: with probability ``blur_prob``, a Gaussian blur with sigma uniform in ``blur_sigma``.
    JPEG: with probability ``jpeg_prob``, JPEG re-compression with quality uniform (integer) in
    ``jpeg_quality``. Flip: horizontal flip with probability ``hflip_prob``. Order: blur, JPEG, flip
    (CNNDetection's order).
    """

    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 100)
    hflip_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("blur_prob", "jpeg_prob", "hflip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Augmentation.{name} must be in [0, 1], got {value}")
        lo, hi = self.blur_sigma
        if not 0.0 <= lo <= hi:
            raise ValueError(f"Augmentation.blur_sigma must satisfy 0 <= low <= high, got {self.blur_sigma}")
        qlo, qhi = self.jpeg_quality
        if not 1 <= qlo <= qhi <= 100:
            raise ValueError(f"Augmentation.jpeg_quality must satisfy 1 <= low <= high <= 100, got {self.jpeg_quality}")

    @property
    def is_identity(self) -> bool:
        return self.blur_prob == 0 and self.jpeg_prob == 0 and self.hflip_prob == 0

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        if self.blur_prob and rng.random() < self.blur_prob:
            sigma = rng.uniform(*self.blur_sigma)
            if sigma > 0:
                img = img.filter(ImageFilter.GaussianBlur(radius=sigma))  # Pillow's radius is the sigma
        if self.jpeg_prob and rng.random() < self.jpeg_prob:
            img = _encode_decode(img, "JPEG", rng.randint(*self.jpeg_quality))
        if self.hflip_prob and rng.random() < self.hflip_prob:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img


AUGMENTATION_PRESETS: dict[str, Augmentation] = {
    "none": Augmentation(),
    "flip": Augmentation(hflip_prob=0.5),
    # CNNDetection "Blur+JPEG (0.5)": sigma ~ U[0, 3], quality ~ U{30..100}, each with p = 0.5
    "cnndetection": Augmentation(blur_prob=0.5, jpeg_prob=0.5, hflip_prob=0.5),
    "cnndetection-0.1": Augmentation(blur_prob=0.1, jpeg_prob=0.1, hflip_prob=0.5),
}


def _augmentation(spec: str | Augmentation | None) -> Augmentation:
    if spec is None:
        return AUGMENTATION_PRESETS["none"]
    if isinstance(spec, Augmentation):
        return spec
    if callable(spec) and hasattr(spec, "is_identity"):
        return spec  # any (img, rng) -> img transform, e.g. hrrkit.eval.perturb.Perturbation
    if spec not in AUGMENTATION_PRESETS:
        raise ValueError(f"unknown augmentation preset {spec!r}; choose one of {sorted(AUGMENTATION_PRESETS)}")
    return AUGMENTATION_PRESETS[spec]


# --------------------------------------------------------------------------------------------------
# input policies (on uint8 HWC arrays: cheap, exact, no interpolation)
# --------------------------------------------------------------------------------------------------


def pad_to_min_size(array: np.ndarray, size: int) -> np.ndarray:
    """Pad an ``(H, W, C)`` array to at least ``size`` on each side by symmetric reflection.

    Padding is split evenly (extra pixel at the bottom/right). Works for any image, 1x1 included.
    """
    h, w = array.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return array
    return np.pad(array, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` window of an ``(H, W, C)`` array (padded first if smaller)."""
    array = pad_to_min_size(array, size)
    h, w = array.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return array[top : top + size, left : left + size]


def random_crop(array: np.ndarray, size: int, rng: random.Random) -> np.ndarray:
    """A uniformly placed ``size x size`` window (padded first if smaller)."""
    array = pad_to_min_size(array, size)
    h, w = array.shape[:2]
    top, left = rng.randint(0, h - size), rng.randint(0, w - size)
    return array[top : top + size, left : left + size]


def grid_tiles(array: np.ndarray, size: int, max_tiles: int | None = None) -> np.ndarray:
    """``(T, size, size, C)`` tiles covering an ``(H, W, C)`` array (padded first if smaller).

    Tiles are laid on an even grid whose last row/column touches the far edge, so every pixel is
    covered and no tile is padded (:func:`hrrkit.utils.tiling.tile_starts`, the rule NoisyRescale's
    eval tiles use too). With ``max_tiles``, that many tiles evenly spaced in the
    row-major tile list are kept (deterministic).
    """
    array = pad_to_min_size(array, size)
    windows = tile_windows(*array.shape[:2], size, max_tiles)
    return np.stack([array[t : t + size, l : l + size] for t, l in windows])


def tile_windows(height: int, width: int, size: int, max_tiles: int | None = None) -> list[tuple[int, int]]:
    """``(top, left)`` of the tiles :func:`grid_tiles` cuts from a ``height x width`` image that is
    already padded to at least ``size`` (row-major; with ``max_tiles``, that many evenly spaced)."""
    windows = [(t, l) for t in tile_starts(height, size) for l in tile_starts(width, size)]
    if max_tiles is not None and len(windows) > max_tiles:
        keep = np.linspace(0, len(windows) - 1, max_tiles).round().astype(int)
        windows = [windows[i] for i in keep]
    return windows


def _hwc_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(..., H, W, C)`` -> float32 ``(..., C, H, W)`` in [-1, 1]."""
    if not array.flags.writeable:  # arrays viewing PIL memory are read-only; torch wants its own
        array = array.copy()
    hwc = torch.from_numpy(np.ascontiguousarray(array))
    # one float32 allocation, already channels-first: for a 4k photo this saves a 144 MB copy
    chw = torch.empty((*hwc.shape[:-3], hwc.shape[-1], *hwc.shape[-3:-1]), dtype=torch.float32)
    return chw.copy_(hwc.movedim(-1, -3)).div_(127.5).sub_(1.0)


def apply_input_policy(
    img: Image.Image,
    policy: str,
    crop_size: int,
    max_tiles: int | None = None,
    rng: random.Random | None = None,
) -> torch.Tensor:
    """A decoded image as the tensor an input policy gives: ``(C, H, W)`` for ``native``,
    ``center_crop`` and ``random_crop`` (``rng`` places the crop), ``(T, C, s, s)`` for ``tiles``;
    float32 in [-1, 1]."""
    if policy not in INPUT_POLICIES:
        raise ValueError(f"unknown input_policy {policy!r}; choose one of {list(INPUT_POLICIES)}")
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if policy == "native":
        return _hwc_to_tensor(array)
    if policy == "center_crop":
        return _hwc_to_tensor(center_crop(array, crop_size))
    if policy == "random_crop":
        return _hwc_to_tensor(random_crop(array, crop_size, rng or random.Random(0)))
    return _hwc_to_tensor(grid_tiles(array, crop_size, max_tiles))


# --------------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------------


class ImageDataset(Dataset):
    """Images of ``samples`` as tensors, with labels and provenance.

    Args:
        samples: the records (from :func:`hrrkit.data.layouts.read_layout`).
        input_policy: one of :data:`INPUT_POLICIES`.
        crop_size: the square side for ``center_crop``/``random_crop``/``tiles`` (pixels).
        max_tiles: the most tiles per image for ``tiles`` (``None`` = all).
        augment: a preset name from :data:`AUGMENTATION_PRESETS` or an :class:`Augmentation`.
        reencode: format equalisation, e.g. ``"jpeg:95"`` (see :class:`ReEncode`); ``None`` = off.
        strict: raise :class:`~hrrkit.data.io.ImageLoadError` on a bad file instead of skipping it.
        seed: base seed; an item's randomness depends only on ``(seed, epoch, index)``.
        load_options: keyword arguments for :func:`hrrkit.data.io.load_image` (``max_pixels``,
            ``background``, ``max_side``, ...).
        pair_keys: one key per sample (e.g. :func:`hrrkit.data.aligned.pair_keys`): items with one key
            get the same random crop and augmentation in an epoch (a real photo and its reconstruction,
            *paired augmentation*), since the randomness depends on ``(seed, epoch, key)``; ``None``:
            on ``(seed, epoch, index)``. :class:`SizeBucketBatchSampler` ``groups`` keeps them in one batch.

    Items are dicts: ``image`` float32 ``(3, H, W)`` (or ``(T, 3, s, s)`` for tiles) in [-1, 1],
    ``label`` (0 real / 1 fake), ``index``, ``path``, ``generator``, ``source``, ``split``; for an
    unreadable file (non-strict) the dict has ``skipped`` (the error's ``to_dict()``) and no image.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        input_policy: str = "center_crop",
        crop_size: int = 256,
        max_tiles: int | None = None,
        augment: str | Augmentation | None = "none",
        reencode: str | ReEncode | None = None,
        strict: bool = False,
        seed: int = 0,
        load_options: dict[str, Any] | None = None,
        pair_keys: Sequence[str] | None = None,
    ) -> None:
        if input_policy not in INPUT_POLICIES:
            raise ValueError(f"unknown input_policy {input_policy!r}; choose one of {list(INPUT_POLICIES)}")
        if not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"crop_size must be a positive int, got {crop_size!r}")
        if max_tiles is not None and max_tiles < 1:
            raise ValueError(f"max_tiles must be >= 1 or None, got {max_tiles}")
        self.samples = list(samples)
        if pair_keys is not None and len(pair_keys) != len(self.samples):
            raise ValueError(f"pair_keys has {len(pair_keys)} keys for {len(self.samples)} samples")
        self.pair_keys = None if pair_keys is None else [str(k) for k in pair_keys]
        self.input_policy = input_policy
        self.crop_size = crop_size
        self.max_tiles = max_tiles
        self.augmentation = _augmentation(augment)
        self.reencode = ReEncode.parse(reencode)
        self.strict = strict
        self.seed = int(seed)
        self.epoch = 0
        self.load_options = dict(load_options or {})
        self.load_options.setdefault("mode", "RGB")

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops/augmentations for a new epoch (call before iterating)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> random.Random:
        # seeding with a string hashes it with SHA-512: the same stream in every process and run
        return random.Random(f"{self.seed}:{self.epoch}:{self._random_key(index)}")

    def _random_key(self, index: int) -> str:
        return str(index) if self.pair_keys is None else f"pair={self.pair_keys[index]}"

    def crop_rng(self, index: int) -> random.Random:
        """The stream that places item ``index``'s crop: a second stream, so crops do not shift when
        augmentation settings change; shared by the items of one pair key."""
        return random.Random(f"{self.seed}:{self.epoch}:{self._random_key(index)}:crop")

    def _info(self, index: int, sample: Sample) -> dict[str, Any]:
        return {
            "index": index,
            "path": sample.path.as_posix(),
            "label": sample.label,
            "generator": sample.generator,
            "source": sample.source,
            "split": sample.split,
        }

    def load(self, index: int) -> Image.Image:
        """The decoded, re-encoded, augmented PIL image of item ``index`` (before shaping)."""
        sample = self.samples[index]
        img = load_image(sample.path, **self.load_options)
        if self.reencode is not None:
            img = self.reencode(img)
        if not self.augmentation.is_identity:
            img = self.augmentation(img, self._rng(index))
        return img

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        item = self._info(index, sample)
        try:
            img = self.load(index)
        except ImageLoadError as exc:
            if self.strict:
                raise
            item["skipped"] = exc.to_dict()
            return item
        rng = self.crop_rng(index)
        item["image"] = apply_input_policy(img, self.input_policy, self.crop_size, self.max_tiles, rng)
        return item

    def header_sizes(self) -> list[tuple[int, int] | None]:
        """``(H, W)`` of every item as the model will see it, read from headers (no decoding).

        EXIF rotations are taken into account; ``None`` for files whose header cannot be read.
        For crop and tile policies every size is ``(crop_size, crop_size)``.
        """
        if self.input_policy in {"center_crop", "random_crop", "tiles"}:
            return [(self.crop_size, self.crop_size)] * len(self.samples)
        sizes: list[tuple[int, int] | None] = []
        max_pixels = self.load_options.get("max_pixels", ...)
        for sample in self.samples:
            try:
                info = (
                    inspect_image(sample.path)
                    if max_pixels is ...
                    else inspect_image(sample.path, max_pixels=max_pixels)
                )
            except ImageLoadError:
                sizes.append(None)
                continue
            h, w = info.height, info.width
            if self.load_options.get("apply_exif", True) and info.exif_orientation in {5, 6, 7, 8}:
                h, w = w, h
            max_side = self.load_options.get("max_side")
            if max_side and max(h, w) > max_side:  # the same rule as load_image's downscale
                scale = max_side / max(h, w)
                h, w = max(1, round(h * scale)), max(1, round(w * scale))
            sizes.append((h, w))
        return sizes


# --------------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------------


def batch_provenance(items: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The readable items of a batch and its provenance fields: ``labels``/``indices`` int64 tensors,
    ``paths``, ``generators``, ``sources``, ``splits`` lists, ``skipped`` (index + reason of each
    unreadable item) and ``images=None`` for the collate function to fill. Shared by every collate."""
    good = [item for item in items if "skipped" not in item]
    batch: dict[str, Any] = {
        "labels": torch.tensor([item["label"] for item in good], dtype=torch.int64),
        "indices": torch.tensor([item["index"] for item in good], dtype=torch.int64),
        "paths": [item["path"] for item in good],
        "generators": [item["generator"] for item in good],
        "sources": [item["source"] for item in good],
        "splits": [item["split"] for item in good],
        "skipped": [{"index": item["index"], **item["skipped"]} for item in items if "skipped" in item],
        "images": None,
    }
    return good, batch


def collate_samples(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`ImageDataset`, dropping skipped ones into ``batch["skipped"]``.

    Returns a dict: ``images`` float32 ``(B, 3, H, W)`` (``None`` when every item was skipped),
    ``labels`` int64 ``(B,)``, ``indices`` int64 ``(B,)``, ``paths``, ``generators``, ``sources``,
    ``splits`` (lists of length B), ``skipped`` (list of ``{"index", "path", "error", "reason"}``),
    and for tiled items ``tile_owner`` int64 ``(sum T,)``: the batch row each tile belongs to
    (``images`` is then ``(sum T, 3, s, s)``).

    Raises:
        ValueError: native-size images of different sizes in one batch (use
            :class:`SizeBucketBatchSampler`, ``batch_size=1`` or a crop policy).
    """
    good, batch = batch_provenance(items)
    if not good:
        return batch
    images = [item["image"] for item in good]
    if images[0].dim() == 4:  # tiles
        batch["tile_owner"] = torch.cat(
            [torch.full((img.shape[0],), row, dtype=torch.int64) for row, img in enumerate(images)]
        )
        batch["images"] = torch.cat(images)
        return batch
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot batch native-size images of different sizes {sorted(shapes)[:4]}: use "
            "SizeBucketBatchSampler (batches by size), batch_size=1, or a crop/tiles input policy"
        )
    batch["images"] = torch.stack(images)
    return batch


class SkipLog:
    """Collects the skipped files reported in batches; summarises and writes them as JSON.

    Use in the main process: ``log.update(batch)`` for every batch, then ``log.summary()`` and
    ``log.write(path)`` (atomic: temporary file, fsync, rename). The JSON is a list of
    ``{"path", "error", "reason"}`` sorted by path, each file once.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, str]] = {}

    def update(self, batch_or_entries: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
        entries = batch_or_entries.get("skipped", []) if isinstance(batch_or_entries, dict) else batch_or_entries
        for entry in entries:
            self._entries[entry["path"]] = {k: entry[k] for k in ("path", "error", "reason")}

    def add(self, error: ImageLoadError) -> None:
        self._entries[error.path] = error.to_dict()

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    @property
    def entries(self) -> list[dict[str, str]]:
        return [self._entries[k] for k in sorted(self._entries)]

    def counts(self) -> dict[str, int]:
        """Number of skipped files per error kind."""
        counts: dict[str, int] = defaultdict(int)
        for entry in self._entries.values():
            counts[entry["error"]] += 1
        return dict(sorted(counts.items()))

    def summary(self, limit: int = 10) -> str:
        """A few lines for a person: how many files were skipped and why."""
        if not self._entries:
            return "no files skipped"
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.counts().items())
        lines = [f"skipped {len(self)} unreadable file(s): {kinds}"]
        lines += [f"  {e['path']}: {e['reason']}" for e in self.entries[:limit]]
        if len(self) > limit:
            lines.append(f"  ... and {len(self) - limit} more")
        return "\n".join(lines)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the entries as JSON atomically; returns the path."""
        return atomic_write_json(path, self.entries)


class SizeBucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose images share one size, for the ``native`` input policy.

    Args:
        sizes: ``(H, W)`` per item, e.g. :meth:`ImageDataset.header_sizes`; ``None`` entries
            (unreadable headers) go into batches of one, where the collate function reports them.
        batch_size: the most items per batch; buckets with fewer items give smaller batches.
        shuffle: shuffle within buckets and the order of batches (seeded by ``seed`` and epoch).
        drop_last: drop each bucket's incomplete last batch.
        num_replicas, rank: for distributed runs, this rank gets every ``num_replicas``-th batch
            (the batch list is padded by repetition so all ranks get the same number of batches).
        groups: one key per item (e.g. :attr:`ImageDataset.pair_keys`); items sharing a key and a size
            always land in one batch (shuffled as a unit), so a real photo and its reconstructions are
            seen together. Whole groups fill a batch up to ``batch_size`` items; a group larger than
            ``batch_size`` is a batch of its own. ``None``: every item is its own group.
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int] | None],
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        groups: Sequence[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} must be in [0, num_replicas={num_replicas})")
        self.sizes = list(sizes)
        if groups is not None and len(groups) != len(self.sizes):
            raise ValueError(f"groups has {len(groups)} keys for {len(self.sizes)} items")
        self.groups = None if groups is None else list(groups)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        singles: list[list[int]] = []
        for index, size in enumerate(self.sizes):
            if size is None:
                singles.append([index])
            else:
                buckets[tuple(size)].append(index)
        batches: list[list[int]] = []
        for size in sorted(buckets):
            indices = buckets[size]
            if self.groups is None:
                if self.shuffle:
                    rng.shuffle(indices)
                chunks = [indices[s : s + self.batch_size] for s in range(0, len(indices), self.batch_size)]
                batches += [c for c in chunks if not (self.drop_last and len(c) < self.batch_size)]
            else:  # a batch of whole groups may be short of batch_size: only the bucket's last is dropped
                chunks = self._group_chunks(indices, rng)
                batches += chunks[:-1] if self.drop_last and len(chunks[-1]) < self.batch_size else chunks
        batches.extend(singles)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _group_chunks(self, indices: list[int], rng: random.Random) -> list[list[int]]:
        """Batches of whole groups (in first-seen order, or shuffled), at most ``batch_size`` items
        each unless one group alone is larger."""
        by_key: dict[str, list[int]] = {}
        for i in indices:
            by_key.setdefault(self.groups[i], []).append(i)  # type: ignore[index]
        units = list(by_key.values())
        if self.shuffle:
            rng.shuffle(units)
        chunks: list[list[int]] = []
        current: list[int] = []
        for unit in units:
            if current and len(current) + len(unit) > self.batch_size:
                chunks.append(current)
                current = []
            current = current + unit
        if current:
            chunks.append(current)
        return chunks

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.num_replicas > 1 and batches:
            total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            batches = batches + batches[: total - len(batches)]
            batches = batches[self.rank :: self.num_replicas]
        return iter(batches)

    def __len__(self) -> int:
        count = len(self._all_batches())
        return math.ceil(count / self.num_replicas) if self.num_replicas > 1 else count
