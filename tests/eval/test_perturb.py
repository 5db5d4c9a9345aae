"""Robustness perturbations, delivery ones included (webp, png-roundtrip, downscale-then-jpeg,
screenshot-like): what each does to the pixels, parsing, and errors."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from hrrkit.eval.perturb import KINDS, SOCIAL_JPEG_QUALITY, Perturbation, parse_perturbations


def _photo(w: int = 61, h: int = 45, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 225, (h // 5 + 1, w // 5 + 1, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    field += rng.normal(0, 6, field.shape)
    return Image.fromarray(np.clip(field, 0, 255).round().astype(np.uint8))


def _array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def _high_frequency_energy(img: Image.Image) -> float:
    a = np.asarray(img.convert("L"), dtype=np.float64)
    return float(np.mean(np.diff(a, axis=0) ** 2) + np.mean(np.diff(a, axis=1) ** 2))


def test_webp_is_lossy_and_monotone_in_quality():
    img = _photo()
    errors = {}
    for q in (20, 50, 90):
        out = Perturbation("webp", q)(img, random.Random(0))
        assert out.size == img.size and out.mode == "RGB"
        errors[q] = np.abs(_array(out) - _array(img)).mean()
        # the same as encoding with Pillow's WebP encoder by hand
        buf = io.BytesIO()
        img.save(buf, format="WEBP", quality=q)
        np.testing.assert_array_equal(_array(out), _array(Image.open(io.BytesIO(buf.getvalue()))))
    assert errors[20] > errors[50] > errors[90] > 0


def test_png_roundtrip_keeps_every_pixel():
    img = _photo(33, 17)
    out = Perturbation("png-roundtrip", 0)(img, random.Random(0))
    np.testing.assert_array_equal(_array(out), _array(img))
    rgba = img.convert("RGBA")
    assert Perturbation("png-roundtrip", 0)(rgba, random.Random(0)).mode == "RGB"


@pytest.mark.parametrize("factor", [0.5, 0.3, 1.0])
def test_downscale_then_jpeg_is_the_social_media_chain(factor):
    img = _photo(80, 51)
    out = Perturbation("downscale-then-jpeg", factor)(img, random.Random(0))
    assert out.size == (max(1, round(80 * factor)), max(1, round(51 * factor)))
    small = img if factor == 1.0 else img.resize(out.size, Image.Resampling.BICUBIC, reducing_gap=None)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=SOCIAL_JPEG_QUALITY, subsampling=2)
    np.testing.assert_array_equal(_array(out), _array(Image.open(io.BytesIO(buf.getvalue()))))
    assert np.abs(_array(out) - _array(small)).mean() > 0  # the JPEG step really ran


def test_screenshot_like_rescales_and_sharpens_losslessly():
    img = _photo(40, 30)
    out = Perturbation("screenshot-like", 1.25)(img, random.Random(0))
    assert out.size == (50, 38)
    plain = img.resize(out.size, Image.Resampling.BILINEAR, reducing_gap=None)
    assert _high_frequency_energy(out) > 1.1 * _high_frequency_energy(plain)
    expected = plain.filter(ImageFilter.UnsharpMask(radius=1, percent=60, threshold=0))
    np.testing.assert_array_equal(_array(out), _array(expected))  # PNG: no further loss


def test_one_pixel_images_survive_every_kind():
    tiny = Image.new("RGB", (1, 1), (120, 30, 200))
    for p in parse_perturbations(["jpeg:50", "webp:50", "png-roundtrip", "downscale-then-jpeg:0.5",
                                  "screenshot-like", "blur:1", "resize:0.5", "crop:0.9", "noise:0.01"]):
        out = p(tiny, random.Random(0))
        assert out.size[0] >= 1 and out.size[1] >= 1 and out.mode == "RGB", p.name


def test_parsing_defaults_names_and_errors():
    ps = parse_perturbations(["webp:50,80", "png-roundtrip", "downscale-then-jpeg", "screenshot-like:1.5",
                              "JPEG:70"])
    assert [p.name for p in ps] == ["webp:50", "webp:80", "png-roundtrip", "downscale-then-jpeg:0.5",
                                    "screenshot-like:1.5", "jpeg:70"]
    assert all(p.kind in KINDS and not p.is_identity for p in ps)
    for bad, message in [("png-roundtrip:1", "takes no value"), ("webp", "expected KIND"),
                         ("webp:0", "out of range"), ("webp:abc", "not a number"),
                         ("downscale-then-jpeg:1.5", "out of range"), ("gif:50", "unknown perturbation")]:
        with pytest.raises(ValueError, match=message):
            parse_perturbations([bad])


def test_perturbations_are_deterministic():
    img = _photo()
    for p in parse_perturbations(["webp:60", "downscale-then-jpeg", "screenshot-like", "noise:0.02"]):
        a, b = p(img, random.Random(5)), p(img, random.Random(5))
        np.testing.assert_array_equal(_array(a), _array(b))
