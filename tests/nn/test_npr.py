"""NPR: x − up(down(x, 0.5)) (nearest) equals the original F.interpolate form on even sizes and is
defined on every size (odd, 1 px), with zero relation inside a 1-pixel block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrrkit.nn.npr import NeighbouringPixelRelation, NPRBackbone, nearest_down_up, neighbouring_pixel_relation


def _original_npr_interpolate(x: torch.Tensor) -> torch.Tensor:
    """NPR's published up(down(x)): two nearest F.interpolate calls (valid on even sizes only)."""
    down = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
    return F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)


@pytest.mark.parametrize("h, w", [(2, 2), (8, 6), (32, 64), (224, 224)])
def test_matches_original_on_even_sizes(h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    torch.testing.assert_close(nearest_down_up(x), _original_npr_interpolate(x), rtol=0, atol=0)
    torch.testing.assert_close(neighbouring_pixel_relation(x), (2 / 3) * (x - _original_npr_interpolate(x)))


@pytest.mark.parametrize("h, w", [(1, 1), (1, 7), (5, 1), (3, 3), (7, 10), (33, 17)])
def test_any_size_keeps_shape_and_follows_the_block_rule(h, w):
    x = torch.randn(2, 3, h, w)
    out = neighbouring_pixel_relation(x, scale=1.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    # independent check, pixel by pixel: the reference is the top-left pixel of the 2x2 block
    ref = torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            ref[..., i, j] = x[..., i, j] - x[..., 2 * (i // 2), 2 * (j // 2)]
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # the top-left pixel of every block is its own reference; a 1x1 image has no relation at all
    assert (out[..., ::2, ::2] == 0).all()
    if h == w == 1:
        assert (out == 0).all()


def test_odd_last_row_and_column_have_zero_relation():
    x = torch.randn(1, 1, 5, 7)
    out = neighbouring_pixel_relation(x)
    assert (out[..., 4, ::2] == 0).all() and (out[..., ::2, 6] == 0).all()
    assert (out[..., 4, 1::2] != 0).all()  # the last row still relates horizontally inside its 1×2 block


def test_constant_and_block_constant_images_give_zero():
    x = torch.rand(1, 3, 4, 4).repeat_interleave(2, -1).repeat_interleave(2, -2)  # 8x8 of 2x2 blocks
    assert neighbouring_pixel_relation(x).abs().max() == 0


def test_gradient_flows_and_module_form():
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(neighbouring_pixel_relation, (x,))
    module = NeighbouringPixelRelation(scale=0.5)
    torch.testing.assert_close(module(x), neighbouring_pixel_relation(x, 0.5))
    assert "scale=0.5" in repr(module)


def test_backbone_wrapper_keeps_contract_on_odd_sizes():
    from hrrkit.models import build_backbone

    backbone = NPRBackbone(build_backbone("compact_cnn", width=4, depth=2))
    assert backbone.out_channels == 8
    for h, w in [(1, 1), (31, 17), (64, 64)]:
        assert backbone(torch.randn(2, 3, h, w)).shape == (2, 8, -(-h // 4), -(-w // 4))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="H, W >= 1"):
        nearest_down_up(torch.zeros(3, 0, 4))


def test_registered_npr_cnn_backbone():
    from hrrkit.models import build_backbone

    backbone = build_backbone("npr_cnn", width=4, depth=2)
    x = torch.rand(1, 3, 9, 9)
    torch.testing.assert_close(backbone(x), backbone.body(neighbouring_pixel_relation(x)))
