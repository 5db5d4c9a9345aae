"""Reflection padding to a multiple, cropping back, and overlapping tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hrrkit.retrospect import AutoencoderRetrospector, PixelDDIMRetrospector
from hrrkit.retrospect.padding import (
    blend_tiles,
    crop_to,
    extract_tiles,
    make_tile_grid,
    pad_to_multiple,
    padded_size,
    tile_starts,
)
from hrrkit.retrospect.tiny import tiny_pixel_unet, tiny_vae


@given(h=st.integers(1, 23), w=st.integers(1, 23), multiple=st.sampled_from([1, 2, 8, 16]))
def test_pad_matches_numpy_reflect_and_crop_restores(h, w, multiple):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * 31 + w))
    padded, info = pad_to_multiple(x, multiple)
    ph, pw = padded_size(h, w, multiple)
    assert padded.shape == (2, 3, ph, pw) and ph % multiple == 0 and pw % multiple == 0
    assert ph - h < multiple and pw - w < multiple
    # numpy's "reflect" repeats the reflection when the pad exceeds the size: an independent reference
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="reflect")
    np.testing.assert_array_equal(padded.numpy(), expected)
    assert torch.equal(crop_to(padded, info), x)


def test_crop_latent_grid():
    x = torch.randn(1, 3, 13, 21)
    padded, info = pad_to_multiple(x, 8)
    latent = torch.randn(1, 4, padded.shape[-2] // 4, padded.shape[-1] // 4)
    assert crop_to(latent, info, factor=4).shape == (1, 4, 4, 6)  # ceil(13/4), ceil(21/4)
    with pytest.raises(ValueError, match="does not match"):
        crop_to(latent, info, factor=2)


@given(length=st.integers(1, 40), tile=st.integers(1, 40), overlap=st.integers(0, 12))
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    if overlap >= tile and tile < length:
        with pytest.raises(ValueError):
            tile_starts(length, tile, overlap)
        return
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + tile] = True
        assert 0 <= s and s + min(tile, length) <= length
    assert covered.all()
    for a, b in zip(starts, starts[1:]):
        assert a + tile - b >= overlap


def test_extract_then_blend_is_identity():
    x = torch.randn(2, 3, 24, 40)
    grid = make_tile_grid(24, 40, tile=16, overlap=6, align=2)
    assert grid.count > 1
    tiles = extract_tiles(x, grid)
    assert tiles.shape == (2 * grid.count, 3, 16, 16)
    torch.testing.assert_close(blend_tiles(tiles, grid, 2, 24, 40), x)


@pytest.mark.parametrize("h,w", [(1, 1), (7, 5), (17, 33), (31, 2)])
def test_retrospectors_return_the_input_size(h, w):
    x = torch.rand(2, 3, h, w) * 2 - 1
    for retro in (
        PixelDDIMRetrospector(tiny_pixel_unet(), steps=2),
        PixelDDIMRetrospector(tiny_pixel_unet(), steps=2, tile_size=8, tile_overlap=2),
        AutoencoderRetrospector(tiny_vae(), tile_size=8, tile_overlap=4, micro_batch=3),
    ):
        out = retro.retrospect(x)
        assert out.reconstruction.shape == x.shape and out.residual.shape == x.shape
        assert torch.isfinite(out.reconstruction).all()
        assert out.reconstruction.abs().max() <= 1.0


def test_tiled_equals_untiled_for_a_pointwise_model():
    """With a per-pixel model (1×1 convs only), tiling must not change the output at all."""

    class Pointwise(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.config = type("C", (), {"in_channels": 3, "out_channels": 3})()

        def forward(self, sample, timestep, return_dict=True):
            return (0.1 * torch.tanh(self.conv(sample)),)

    model = Pointwise()
    x = torch.rand(1, 3, 21, 30) * 2 - 1
    whole = PixelDDIMRetrospector(model, steps=3, clip_sample=False)(x)
    tiled = PixelDDIMRetrospector(model, steps=3, clip_sample=False, tile_size=8, tile_overlap=3)(x)
    torch.testing.assert_close(tiled, whole)


def _calls(retro, images):
    """Shapes of the batches the retrospector's UNet was called with, and the output."""
    shapes = []
    handle = retro.unet.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    try:
        out = retro.retrospect(images)
    finally:
        handle.remove()
    return shapes, out


def test_call_pixels_bounds_every_network_call_and_tiles_only_larger_images():
    unet = tiny_pixel_unet()
    gen = torch.Generator().manual_seed(5)
    batch = torch.rand(5, 3, 16, 16, generator=gen) * 2 - 1  # 256 px each, 1280 in all
    bounded = PixelDDIMRetrospector(unet, steps=2, call_pixels=600, tile_overlap=4)
    whole = PixelDDIMRetrospector(unet, steps=2, call_pixels=None, tile_overlap=4)
    shapes, out = _calls(bounded, batch)
    assert shapes and all(n * h * w <= 600 for n, _, h, w in shapes)
    assert {h for _, _, h, _ in shapes} == {16}, "images under the bound are never tiled"
    # grouping images into calls does not change the result (beyond float rounding)
    torch.testing.assert_close(out.reconstruction, whole(batch), rtol=1e-5, atol=1e-5)
    assert out.nfe == whole.retrospect(batch).nfe == bounded.cost((16, 16)).nfe

    large = torch.rand(1, 3, 40, 52, generator=gen) * 2 - 1  # 2080 px > 600: tiles of 24 x 24 (576 px)
    shapes, out = _calls(bounded, large)
    assert all(n * h * w <= 600 for n, _, h, w in shapes) and {(h, w) for _, _, h, w in shapes} == {(24, 24)}
    grid, chunk = bounded.plan((40, 52))
    assert (grid.tile_h, grid.tile_w, grid.count, chunk) == (24, 24, 6, 1)
    assert out.nfe == bounded.cost((40, 52)).nfe == whole.cost().nfe * grid.count
    assert out.reconstruction.shape == large.shape and torch.isfinite(out.reconstruction).all()
    # the bound is part of the retrospector's identity (it decides the tiles), unless tile_size does
    assert bounded.config_hash() != whole.config_hash()
    tiled = PixelDDIMRetrospector(unet, steps=2, tile_size=24, tile_overlap=4, call_pixels=600)
    assert "call_pixels" not in tiled.config_dict() and tiled.plan((40, 52))[0] == grid
    with pytest.raises(ValueError, match="call_pixels"):
        PixelDDIMRetrospector(unet, steps=2, call_pixels=0)
