"""Real images for the mini-benchmark: crops of the colour photographs scikit-image ships.

Only files bundled inside the scikit-image wheel are used (read straight from the package folder
with Pillow), so nothing is ever downloaded: ``skimage.data`` fetches its larger images with pooch
on first use, and those are deliberately not in :data:`PHOTOGRAPHS`.

Only colour photographs are used. Grey photographs (``camera``, ``moon``, ...) would become real
images whose three channels are exactly equal, something a generator trained on a mixed set never
produces, so "R == G == B" would be a perfect and meaningless real-image cue.

A crop is taken the way a camera would frame a small picture, not as a zoomed-in pixel patch: the
photograph is first resized (Pillow's antialiased Lanczos, via a cached copy with short side
``2 * SHORT_SIDE_MAX``) so that its short side is a random whole length in
``[SHORT_SIDE_MIN, SHORT_SIDE_MAX]`` (log-uniform), then a window of the wanted size is cut at a
random position. Resizing by a factor of at least ~2 also erases the 8x8 JPEG block grid of the three
photographs that scikit-image stores as JPEG, so the source format of a photograph is not a cue.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "PHOTOGRAPHS",
    "SHORT_SIDE_MAX",
    "SHORT_SIDE_MIN",
    "MIN_CROP_STD",
    "CropSpec",
    "SourceUnavailableError",
    "load_photograph",
    "photograph_digest",
    "random_crop_spec",
    "render_crop",
    "training_crops",
]

#: The colour photographs (file names inside ``skimage/data``) the crops are cut from.
PHOTOGRAPHS: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
)

#: Short side (pixels) the photograph is resized to before a crop is cut: log-uniform in this range.
SHORT_SIDE_MIN = 64
SHORT_SIDE_MAX = 256

#: Crops whose grey-level standard deviation is below this (on 0..255) are redrawn: the black borders
#: of ``retina`` and ``hubble_deep_field`` would otherwise give many identical all-black "images",
#: i.e. duplicates across splits.
MIN_CROP_STD = 4.0

_MAX_REDRAWS = 64


class SourceUnavailableError(RuntimeError):
    """scikit-image (or one of its bundled photographs) is missing; the message says how to fix it."""


@functools.lru_cache(maxsize=1)
def _data_dir() -> Path:
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SourceUnavailableError(
            "the mini-benchmark crops the photographs bundled with scikit-image; install it with "
            "`pip install 'hrrkit[demo]'` (or `pip install scikit-image`)"
        ) from exc
    return Path(skimage.data.__file__).parent


@functools.cache
def load_photograph(name: str) -> np.ndarray:
    """The bundled photograph ``name`` as a read-only ``uint8`` array of shape ``(H, W, 3)``."""
    from PIL import Image

    if name not in PHOTOGRAPHS:
        raise ValueError(f"{name!r} is not one of the mini-benchmark photographs {PHOTOGRAPHS}")
    path = _data_dir() / name
    if not path.is_file():
        raise SourceUnavailableError(
            f"{path}: scikit-image does not ship this photograph in this installation "
            f"(scikit-image >= 0.22 bundles it in the wheel); reinstall scikit-image"
        )
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    array.setflags(write=False)
    return array


def photograph_digest() -> str:
    """SHA-256 over the decoded pixels of every photograph: part of the cache key of a build."""
    digest = hashlib.sha256()
    for name in PHOTOGRAPHS:
        pixels = load_photograph(name)
        digest.update(name.encode())
        digest.update(np.asarray(pixels.shape, dtype=np.int64).tobytes())
        digest.update(pixels.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class CropSpec:
    """Where a real crop comes from: enough to render it again exactly.

    Attributes:
        photograph: file name in :data:`PHOTOGRAPHS`.
        short_side: the photograph is resized (aspect kept) so that its short side has this length.
        top, left: the crop's corner in the resized photograph (pixels).
        height, width: the crop's size (pixels).
        flip: mirror the crop left-right.
    """

    photograph: str
    short_side: int
    top: int
    left: int
    height: int
    width: int
    flip: bool


def _resize_short_side(photo: np.ndarray, short_side: int) -> np.ndarray:
    from PIL import Image

    h, w = photo.shape[:2]
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # Pillow takes (width, height)
    resized = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
    resized.setflags(write=False)
    return resized


@functools.cache
def _base(name: str) -> np.ndarray:
    # one expensive resize per photograph to twice the largest short side; every crop scale is then
    # a cheap resize of this (a 1411-pixel photograph costs ~50 ms to resize, its base ~3 ms)
    photo = load_photograph(name)
    if min(photo.shape[:2]) <= 2 * SHORT_SIDE_MAX:
        return photo
    return _resize_short_side(photo, 2 * SHORT_SIDE_MAX)


@functools.lru_cache(maxsize=512)
def _resized(name: str, short_side: int) -> np.ndarray:
    return _resize_short_side(_base(name), short_side)


def render_crop(spec: CropSpec) -> np.ndarray:
    """The crop described by ``spec`` as a ``uint8`` array of shape ``(height, width, 3)``."""
    resized = _resized(spec.photograph, spec.short_side)
    crop = resized[spec.top : spec.top + spec.height, spec.left : spec.left + spec.width]
    if crop.shape[:2] != (spec.height, spec.width):
        raise ValueError(f"{spec}: the window leaves the resized photograph of shape {resized.shape[:2]}")
    if spec.flip:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def _grey_std(crop: np.ndarray) -> float:
    return float(crop.astype(np.float32).mean(axis=2).std())


def random_crop_spec(rng: np.random.Generator, height: int, width: int, *, photograph: str | None = None) -> CropSpec:
    """Draw a crop of ``height x width`` pixels (photograph, scale, position, flip) from ``rng``.

    The photograph is chosen uniformly unless given. Windows that are nearly flat (grey-level standard
    deviation below :data:`MIN_CROP_STD`) are redrawn.
    """
    if height < 1 or width < 1:
        raise ValueError(f"a crop needs a positive size, got {height}x{width}")
    if max(height, width) > SHORT_SIDE_MIN:
        raise ValueError(f"crops are at most {SHORT_SIDE_MIN} pixels a side, got {height}x{width}")
    for _ in range(_MAX_REDRAWS):
        name = photograph or PHOTOGRAPHS[int(rng.integers(len(PHOTOGRAPHS)))]
        short_side = int(round(np.exp(rng.uniform(np.log(SHORT_SIDE_MIN), np.log(SHORT_SIDE_MAX)))))
        resized = _resized(name, short_side)
        top = int(rng.integers(resized.shape[0] - height + 1))
        left = int(rng.integers(resized.shape[1] - width + 1))
        spec = CropSpec(name, short_side, top, left, height, width, bool(rng.integers(2)))
        if _grey_std(render_crop(spec)) >= MIN_CROP_STD:
            return spec
    raise RuntimeError(f"no textured {height}x{width} window found in {_MAX_REDRAWS} draws")  # pragma: no cover


def training_crops(count: int, size: int, seed: int) -> np.ndarray:
    """``count`` random real crops of ``size x size`` for training the generators.

    Returns ``uint8`` of shape ``(count, size, size, 3)``. Photographs are used in turn (so each gets
    the same share) and every other parameter is drawn from ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    crops = [
        render_crop(random_crop_spec(rng, size, size, photograph=PHOTOGRAPHS[i % len(PHOTOGRAPHS)]))
        for i in range(count)
    ]
    return np.stack(crops)
