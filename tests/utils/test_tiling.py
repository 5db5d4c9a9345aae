"""One tiling rule: the data pipeline's ``tiles`` policy and NoisyRescale's eval tiles agree."""

from __future__ import annotations

import numpy as np
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
