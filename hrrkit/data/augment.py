"""Named training-augmentation presets beyond the basic ones of :mod:`hrrkit.data.dataset`.

Every preset is an ``(img, rng) -> img`` transform on PIL images with an ``is_identity`` property,
applied to real and fake images alike, with randomness drawn only from the dataset's per-item
``random.Random`` (a pure function of seed, epoch and index: same seed, same augmented images).
Importing :mod:`hrrkit.data` registers these in :data:`hrrkit.data.dataset.AUGMENTATION_PRESETS`, so
``input.augment`` / ``ImageDataset(augment=...)`` accept their names:

* ``cnnspot`` — CNNSpot's "Blur+JPEG (0.5)" (Wang et al., "CNN-generated images are surprisingly easy
  to spot... for now", CVPR 2020): with p = 0.5 a Gaussian blur σ ~ U[0, 3] px, then with p = 0.5 a JPEG
  re-compression at quality ~ U{30..100}, then a horizontal flip with p = 0.5 (the same transform as
  ``cnndetection``, the repository's name for that paper; listed under the baseline's name).
* ``jpeg-chain`` — delivery-chain robustness (AI-GenBench, Pellegrini et al., 2025: training with
  chains of up to 3 JPEG compressions): with p = 0.5 the image goes through k ~ U{1, 2, 3} successive
  JPEG compressions, each at its own quality ~ U{65..100} (the range of photo sharing and messaging
  apps; hrrkit's choice, the benchmark names no single range), then a horizontal flip with p = 0.5.
  Half the training images stay uncompressed so the detector still sees clean files.
* ``cnnspot+jpeg-chain`` — both: CNNSpot's blur/JPEG, then the JPEG chain.
* ``delivery`` — one of the ways a picture reaches a user, drawn with equal odds (:class:`Delivery`):
  a JPEG chain (1–2 compressions, quality 60–95), a WebP re-encode (quality 50–90), or a downscale
  (factor 0.5–0.9, Lanczos) followed by a JPEG (quality 70–95). Used for the augmented copies of the
  frozen-backbone recipe (:mod:`hrrkit.train.frozen`), where the untouched file is always one copy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from hrrkit.data.dataset import AUGMENTATION_PRESETS, Augmentation, ReEncode

__all__ = ["AugmentChain", "Delivery", "JpegChain", "PRESETS", "register_presets"]


@dataclass(frozen=True)
class JpegChain:
    """With probability ``prob``, ``k ~ U{1..max_compressions}`` successive JPEG compressions (4:2:0),
    each at an independent integer quality ~ U{``quality``}; then a horizontal flip with ``hflip_prob``."""

    prob: float = 0.5
    max_compressions: int = 3
    quality: tuple[int, int] = (65, 100)
    hflip_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0 or not 0.0 <= self.hflip_prob <= 1.0:
            raise ValueError(f"JpegChain: prob and hflip_prob must be in [0, 1], got {self.prob}, {self.hflip_prob}")
        if self.max_compressions < 1:
            raise ValueError(f"JpegChain.max_compressions must be >= 1, got {self.max_compressions}")
        lo, hi = self.quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"JpegChain.quality must satisfy 1 <= low <= high <= 100, got {self.quality}")

    @property
    def is_identity(self) -> bool:
        return self.prob == 0 and self.hflip_prob == 0

    def qualities(self, rng: random.Random) -> list[int]:
        """The qualities of one draw (empty: left uncompressed); consumes ``rng`` as ``__call__`` does."""
        if not (self.prob and rng.random() < self.prob):
            return []
        return [rng.randint(*self.quality) for _ in range(rng.randint(1, self.max_compressions))]

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        for q in self.qualities(rng):
            img = ReEncode("JPEG", q)(img)
        if self.hflip_prob and rng.random() < self.hflip_prob:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img


@dataclass(frozen=True)
class AugmentChain:
    """Apply ``steps`` (each an ``(img, rng) -> img`` augmentation) in order, sharing one ``rng``."""

    steps: tuple

    @property
    def is_identity(self) -> bool:
        return all(step.is_identity for step in self.steps)

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        for step in self.steps:
            img = step(img, rng)
        return img


@dataclass(frozen=True)
class Delivery:
    """One delivery chain per call, drawn with equal odds: JPEG ×``1..2`` at ``jpeg_quality``; WebP at
    ``webp_quality``; or a downscale by a factor in ``downscale`` (antialiased Lanczos; never below 8 px)
    followed by one JPEG at ``rescaled_jpeg_quality``. Qualities are integers drawn uniformly."""

    jpeg_quality: tuple[int, int] = (60, 95)
    webp_quality: tuple[int, int] = (50, 90)
    downscale: tuple[float, float] = (0.5, 0.9)
    rescaled_jpeg_quality: tuple[int, int] = (70, 95)

    is_identity = False

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randint(1, 2)):
                img = ReEncode("JPEG", rng.randint(*self.jpeg_quality))(img)
            return img
        if kind == 1:
            return ReEncode("WEBP", rng.randint(*self.webp_quality))(img)
        factor = rng.uniform(*self.downscale)
        size = (max(8, round(img.width * factor)), max(8, round(img.height * factor)))
        img = img.resize(size, Image.Resampling.LANCZOS)
        return ReEncode("JPEG", rng.randint(*self.rescaled_jpeg_quality))(img)


PRESETS: dict[str, object] = {
    "cnnspot": Augmentation(blur_prob=0.5, blur_sigma=(0.0, 3.0), jpeg_prob=0.5, jpeg_quality=(30, 100), hflip_prob=0.5),
    "jpeg-chain": JpegChain(prob=0.5, max_compressions=3, quality=(65, 100), hflip_prob=0.5),
    "cnnspot+jpeg-chain": AugmentChain((
        Augmentation(blur_prob=0.5, blur_sigma=(0.0, 3.0), jpeg_prob=0.5, jpeg_quality=(30, 100)),
        JpegChain(prob=0.5, max_compressions=3, quality=(65, 100), hflip_prob=0.5),
    )),
    "delivery": Delivery(),
}


def register_presets(table: dict = AUGMENTATION_PRESETS) -> None:
    """Add :data:`PRESETS` to the dataset's preset table (idempotent; a name clash with a different
    transform is an error, never a silent override)."""
    for name, transform in PRESETS.items():
        if name in table and table[name] != transform:
            raise ValueError(f"augmentation preset {name!r} is already defined differently")
        table[name] = transform


register_presets()
