"""What the app computes per image, without a server: loader errors as rows, the pixel limit, and
figures that stay readable for extreme aspect ratios."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hrrkit.app.analysis import evidence_figure, retrospection_figure, score_uploads
from hrrkit.models.detector import HRRDetector


@pytest.fixture(scope="module")
def detector(app_model):
    return HRRDetector.from_pretrained(app_model["model"])


def _png(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_truncated_and_empty_files_are_rows_with_the_loaders_message(detector, app_model):
    data = app_model["real"][0].read_bytes()
    results = score_uploads(detector, [("cut.png", data[: len(data) // 2]), ("empty.jpg", b""), ("ok.png", data)])
    errors = [r.row["error"] for r in results]
    assert errors[0].split(":")[0] in ("TruncatedImageError", "CorruptImageError")
    assert errors[1].startswith("EmptyFileError: ") and errors[2] is None
    assert [r.ok for r in results] == [False, False, True] and results[2].prediction["maps"]


def test_the_pixel_limit_applies(app_model):
    small_limit = HRRDetector.from_pretrained(app_model["model"])
    small_limit.config.input.max_pixels = 500
    (result,) = score_uploads(small_limit, [("big.png", _png(40, 40))])
    assert result.row["error"].startswith("DecompressionBombError: ")


@pytest.mark.parametrize("size", [(600, 20), (20, 600)])
def test_figures_of_very_wide_or_tall_images_stay_bounded(detector, size):
    (result,) = score_uploads(detector, [("strip.png", _png(*size))])
    assert result.ok, result.row
    evidence, caption = evidence_figure(detector, result)
    assert "logit" in caption
    panel, _ = retrospection_figure(detector, result)
    for png in (evidence, panel):
        with Image.open(io.BytesIO(png)) as img:
            assert 100 < img.width < 1200 and 60 < img.height < 700, img.size
