"""Perturbations for robustness evaluation, applied to real and fake images alike.

Spec strings (``hrrkit eval --perturb``): ``jpeg:30,50,70,90`` (JPEG quality), ``blur:0.5,1,2``
(Gaussian σ in pixels), ``resize:0.5,0.75`` (scale factor, bicubic, antialiased), ``crop:0.9``
(centre crop keeping this fraction of each side), ``noise:0.01`` (additive Gaussian noise, σ as a
fraction of the 0–255 range, seeded per image).

Delivery perturbations — what happens to an image between the generator and the person checking it
(peers that score PNG fakes perfectly can drop to chance when the same fakes arrive as WebP):

* ``webp:50,80`` — WebP (lossy) at quality Q, as browsers, CDNs and messengers re-encode;
* ``png-roundtrip`` — lossless PNG encode/decode: the pixels must not change, so the scores must not
  either (a control: a detector reading file-format metadata would move here);
* ``downscale-then-jpeg:0.5`` — the social-media chain: downscale by the factor (bicubic,
  antialiased), then JPEG at quality 75 with 4:2:0 chroma (what upload pipelines typically do;
  default factor 0.5);
* ``screenshot-like:1.25`` — a screen capture: resize by the display-scaling factor (bilinear, as
  compositors scale), an unsharp mask (radius 1 px, 60 %, as displays and capture tools sharpen), saved
  losslessly (default factor 1.25, a 125 % scaled screen).

``png-roundtrip`` takes no value; ``downscale-then-jpeg`` and ``screenshot-like`` may omit theirs.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

KINDS = ("jpeg", "blur", "resize", "crop", "noise", "webp", "png-roundtrip", "downscale-then-jpeg", "screenshot-like")
# kinds that may be named without a value, and the strength they then use
DEFAULT_STRENGTH = {"png-roundtrip": 0.0, "downscale-then-jpeg": 0.5, "screenshot-like": 1.25}
SOCIAL_JPEG_QUALITY = 75  # downscale-then-jpeg's JPEG step


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
            "crop": 0 < self.strength <= 1, "noise": self.strength >= 0, "webp": 1 <= self.strength <= 100,
            "png-roundtrip": self.strength == 0, "downscale-then-jpeg": 0 < self.strength <= 1,
            "screenshot-like": 0 < self.strength <= 4,
        }[self.kind]
        if not valid:
            raise ValueError(f"perturbation {self.kind}:{self.strength:g}: strength out of range")

    @property
    def is_identity(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return self.kind if self.kind == "png-roundtrip" else f"{self.kind}:{self.strength:g}"

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        img = img.convert("RGB")
        if self.kind == "jpeg":
            return _encode_decode(img, "JPEG", quality=int(self.strength))
        if self.kind == "webp":
            return _encode_decode(img, "WEBP", quality=int(self.strength))
        if self.kind == "png-roundtrip":
            return _encode_decode(img, "PNG")
        if self.kind == "downscale-then-jpeg":
            return _encode_decode(_scaled(img, self.strength, Image.Resampling.BICUBIC), "JPEG",
                                  quality=SOCIAL_JPEG_QUALITY, subsampling=2)
        if self.kind == "screenshot-like":
            scaled = _scaled(img, self.strength, Image.Resampling.BILINEAR)
            sharpened = scaled.filter(ImageFilter.UnsharpMask(radius=1, percent=60, threshold=0))
            return _encode_decode(sharpened, "PNG")
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


def _encode_decode(img: Image.Image, fmt: str, **options) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def _scaled(img: Image.Image, factor: float, resample: Image.Resampling) -> Image.Image:
    w, h = img.size
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return img if size == img.size else img.resize(size, resample, reducing_gap=None)


def parse_perturbations(specs: list[str]) -> list[Perturbation]:
    """``["jpeg:30,50", "blur:1", "png-roundtrip"]`` → perturbations, in order; errors name the bad spec."""
    out = []
    for spec in specs:
        kind, sep, values = spec.partition(":")
        kind = kind.strip().lower()
        if kind in DEFAULT_STRENGTH and not values:
            out.append(Perturbation(kind, DEFAULT_STRENGTH[kind]))
            continue
        if kind == "png-roundtrip":
            raise ValueError(f"--perturb {spec!r}: png-roundtrip takes no value")
        if not sep or not values:
            raise ValueError(f"--perturb {spec!r}: expected KIND:V1[,V2...] with KIND in {KINDS}")
        for v in values.split(","):
            try:
                strength = float(v)
            except ValueError:
                raise ValueError(f"--perturb {spec!r}: {v!r} is not a number") from None
            out.append(Perturbation(kind.strip().lower(), strength))
    return out
