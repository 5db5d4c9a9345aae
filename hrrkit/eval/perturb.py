"""Perturbations for robustness evaluation, applied to real and fake images alike.

Spec strings (``hrrkit eval --perturb``): ``jpeg:30,50,70,90`` (JPEG quality), ``blur:0.5,1,2``
(Gaussian σ in pixels), ``resize:0.5,0.75`` (scale factor, bicubic, antialiased), ``crop:0.9``
(centre crop keeping this fraction of each side), ``noise:0.01`` (additive Gaussian noise, σ as a
fraction of the 0–255 range, seeded per image).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

KINDS = ("jpeg", "blur", "resize", "crop", "noise")


@dataclass(frozen=True)
class Perturbation:
    """One perturbation at one strength; ``__call__(img, rng)`` like a dataset augmentation."""

    kind: str
    strength: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown perturbation {self.kind!r}; choose from {KINDS}")
        valid = {
            "jpeg": 1 <= self.strength <= 100, "blur": self.strength >= 0, "resize": 0 < self.strength <= 4,
            "crop": 0 < self.strength <= 1, "noise": self.strength >= 0,
        }[self.kind]
        if not valid:
            raise ValueError(f"perturbation {self.kind}:{self.strength:g}: strength out of range")

    @property
    def is_identity(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.strength:g}"

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        img = img.convert("RGB")
        if self.kind == "jpeg":
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=int(self.strength))
            buf.seek(0)
            return Image.open(buf).convert("RGB")
        if self.kind == "blur":
            return img.filter(ImageFilter.GaussianBlur(radius=self.strength)) if self.strength > 0 else img
        if self.kind == "resize":
            w, h = img.size
            size = (max(1, round(w * self.strength)), max(1, round(h * self.strength)))
            return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
        if self.kind == "crop":
            w, h = img.size
            cw, ch = max(1, round(w * self.strength)), max(1, round(h * self.strength))
            left, top = (w - cw) // 2, (h - ch) // 2
            return img.crop((left, top, left + cw, top + ch))
        arr = np.asarray(img, dtype=np.float32)
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, self.strength * 255.0, arr.shape)
        return Image.fromarray(np.clip(arr + noise, 0, 255).round().astype(np.uint8))


def parse_perturbations(specs: list[str]) -> list[Perturbation]:
    """``["jpeg:30,50", "blur:1"]`` → perturbations, in order; errors name the bad spec."""
    out = []
    for spec in specs:
        kind, sep, values = spec.partition(":")
        if not sep or not values:
            raise ValueError(f"--perturb {spec!r}: expected KIND:V1[,V2...] with KIND in {KINDS}")
        for v in values.split(","):
            try:
                strength = float(v)
            except ValueError:
                raise ValueError(f"--perturb {spec!r}: {v!r} is not a number") from None
            out.append(Perturbation(kind.strip().lower(), strength))
    return out
