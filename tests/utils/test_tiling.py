"""One tiling rule: the data pipeline's ``tiles`` policy and NoisyRescale's eval tiles agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrrkit.data.dataset import grid_tiles
from hrrkit.nn import NoisyRescale
from hrrkit.utils.tiling import tile_starts


def test_the_example_from_the_issue_and_half_rounding():
    assert tile_starts(8, 3) == [0, 3, 5]  # 2.5 rounds up
    assert tile_starts(3, 3) == [0] and tile_starts(2, 3) == [0]
    for length in range(1, 65):
        for tile in range(1, length + 1):
            starts = tile_starts(length, tile)
            exact = [i * (length - tile) / max(1, len(starts) - 1) for i in range(len(starts))]
            assert all(s == int(np.floor(e + 0.5)) for s, e in zip(starts, exact))
            assert starts[0] == 0 and starts[-1] == length - tile
            assert all(b - a <= tile for a, b in zip(starts, starts[1:]))  # no gap


def test_dataset_tiles_and_noisyrescale_tiles_are_the_same_windows():
    rescale = NoisyRescale((1.0,), noise_std=0.0, output="crops", crop_size=5, min_side=1).eval()
    for h, w in [(8, 8), (13, 7), (11, 23), (5, 5)]:
        image = torch.arange(3 * h * w, dtype=torch.float32).reshape(1, 3, h, w)
        views = rescale(image)
        layers = views.groups[0][0]
        array = image[0].permute(1, 2, 0).numpy()
        tiles = torch.from_numpy(grid_tiles(array, 5)).permute(0, 3, 1, 2)
        assert torch.equal(layers, tiles), (h, w)


def test_row_strips_give_the_one_pass_result_bit_for_bit():
    from hrrkit.nn import LineEnhancement
    from hrrkit.retrospect import BlurRetrospector
    from hrrkit.utils.tiling import map_row_strips

    torch.manual_seed(0)
    x = torch.rand(2, 3, 41, 29, requires_grad=True)
    enhance = LineEnhancement(sigma_sharpen=1.5, sigma_edge=1.0, impl="reference")
    blur = BlurRetrospector(2.0)
    whole, blurred = enhance(x), blur(x.detach())
    for strip in (29, 5 * 29, 300):  # one row per strip (fewer rows than the halo), five rows, ~ten rows
        enhance.strip_pixels = blur.strip_pixels = strip
        assert torch.equal(enhance(x), whole) and torch.equal(blur(x.detach()), blurred)
    (g_whole,) = torch.autograd.grad(whole.square().sum(), x)
    enhance.strip_pixels = 5 * 29
    (g_strips,) = torch.autograd.grad(enhance(x).square().sum(), x)
    torch.testing.assert_close(g_strips, g_whole, rtol=1e-5, atol=1e-6)
    assert map_row_strips(lambda t: t * 2, x, 3, 10**9) is not None  # small images: one call


def test_predict_without_intermediates_scores_the_same():
    from PIL import Image

    from hrrkit.models import HRRDetector, preset_config

    torch.manual_seed(0)
    det = HRRDetector(preset_config("hrr").replace(**{"input.eval_policy": "native",
                                                       "retrospector.kind": "blur", "retrospector.path": None}))
    with torch.no_grad():
        for p in det.head.parameters():
            p.normal_(0, 0.5)
    det.eval()
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (30 + i, 41, 3), dtype=np.uint8)) for i in (0, 1)]
    plain, with_maps = det.predict(images), det.predict(images, with_maps=True)
    assert det.msr.keep_intermediates  # restored after predict
    for a, b in zip(plain, with_maps):
        assert abs(a["score"] - b["score"]) < 1e-6 and a["scale_scores"] == pytest.approx(b["scale_scores"], abs=1e-6)
