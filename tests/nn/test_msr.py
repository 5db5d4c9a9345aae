"""MSR layers: rescale policy, dither, crops/tiles, line enhancement module, style statistics,
scale-consistency KL against F.kl_div, and the composed module on mixed odd-size batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrrkit.nn.msr import (
    LineEnhancement,
    MSROutput,
    MultiScaleStyleRetrospection,
    NoisyRescale,
    ScaleConsistencyKL,
    StyleStatistics,
)
from hrrkit.ops.line_enhance import line_enhance_reference
from hrrkit.ops.moments import multilevel_moments_reference, num_cells
from hrrkit.testing import assert_close, tolerance_for
from hrrkit.utils.tiling import tile_starts

# ------------------------------------------------------------------------------ NoisyRescale


def test_scaled_size_policy_keeps_aspect_and_honours_floor_and_cap():
    r = NoisyRescale(scales=(0.5, 1.0, 2.0), min_side=8, max_side=100)
    assert r.scaled_size(33, 65, 0.5) == (17, 33)  # round half up, odd stays odd
    assert r.scaled_size(33, 65, 1.0) == (33, 65)
    assert r.scaled_size(33, 65, 2.0) == (51, 100)  # longer side capped, aspect kept
    assert r.scaled_size(5, 9, 0.5) == (8, 14)  # shorter side floored
    assert r.scaled_size(1, 1, 0.5) == (8, 8)
    assert r.scaled_size(4, 400, 1.0) == (8, 800)  # the floor wins over the cap
    crops = NoisyRescale(output="crops", crop_size=16, min_side=4)
    assert min(crops.scaled_size(7, 30, 0.5)) == 16


def test_tile_starts_cover_evenly():
    for length, crop in [(16, 16), (17, 16), (40, 16), (100, 33)]:
        starts = tile_starts(length, crop)
        assert len(starts) == -(-length // crop)
        assert starts[0] == 0 and starts[-1] == length - crop
        covered = set()
        for s in starts:
            covered.update(range(s, s + crop))
        assert covered == set(range(length))


def test_full_output_groups_mixed_sizes_and_keeps_scale_one_exact():
    imgs = [torch.rand(3, 9, 13), torch.rand(3, 17, 5), torch.rand(3, 9, 13)]
    r = NoisyRescale(scales=(0.5, 1.0), noise_std=0.0, min_side=2).eval()
    views = r(imgs)
    assert views.num_images == 3 and views.scales == (0.5, 1.0)
    # scale 1: two size groups, the 9×13 images together, untouched
    groups = {tuple(g.shape[-2:]): (g, i) for g, i in zip(views.groups[1], views.image_index[1])}
    g, idx = groups[(9, 13)]
    assert idx.tolist() == [0, 2]
    assert torch.equal(g[0], imgs[0]) and torch.equal(g[1], imgs[2])
    assert views.scaled_sizes[0] == [(5, 7), (9, 3), (5, 7)]
    # antialiased resampling: same as F.interpolate
    g, idx = {tuple(g.shape[-2:]): (g, i) for g, i in zip(views.groups[0], views.image_index[0])}[(9, 3)]
    expected = F.interpolate(imgs[1][None], size=(9, 3), mode="bilinear", antialias=True, align_corners=False)
    assert_close(g, expected, torch.float32)


def test_dither_is_seedable_train_only_and_has_the_asked_std():
    x = torch.zeros(2, 3, 64, 64)
    r = NoisyRescale(scales=(1.0,), noise_std=0.1, seed=7)
    a = r(x).groups[0][0]
    r.reset_rng()
    b = r(x).groups[0][0]
    c = r(x).groups[0][0]
    assert torch.equal(a, b) and not torch.equal(b, c)
    assert a.std().item() == pytest.approx(0.1, rel=0.05)
    r.eval()
    assert torch.equal(r(x).groups[0][0], x)
    r_eval = NoisyRescale(scales=(1.0,), noise_std=0.1, seed=7, dither_in_eval=True).eval()
    assert not torch.equal(r_eval(x).groups[0][0], x)


def test_crops_train_random_eval_tiles():
    imgs = [torch.rand(3, 20, 45), torch.rand(3, 31, 16)]
    r = NoisyRescale(scales=(1.0, 0.5), noise_std=0.0, output="crops", crop_size=16, seed=0)
    train = r(imgs)
    for s in range(2):
        assert len(train.groups[s]) == 1
        assert train.groups[s][0].shape == (2, 3, 16, 16)
        assert sorted(train.image_index[s][0].tolist()) == [0, 1]
    # the crop is the image content at its box
    idx = train.image_index[0][0].tolist().index(0)
    top, left, h, w = train.boxes[0][0][idx].tolist()
    assert torch.equal(train.groups[0][0][idx], imgs[0][:, top : top + h, left : left + w])
    r.eval()
    tiles = r(imgs)
    assert tiles.groups[0][0].shape == (2 * 3 + 2 * 1, 3, 16, 16)
    assert tiles.image_index[0][0].tolist() == [0] * 6 + [1] * 2
    for k in range(8):
        i = tiles.image_index[0][0][k].item()
        top, left, h, w = tiles.boxes[0][0][k].tolist()
        assert torch.equal(tiles.groups[0][0][k], imgs[i][:, top : top + h, left : left + w])


def test_rescale_argument_errors():
    with pytest.raises(ValueError, match="scales"):
        NoisyRescale(scales=(0.0,))
    with pytest.raises(ValueError, match="crop_size"):
        NoisyRescale(output="crops")
    with pytest.raises(ValueError, match="channel"):
        NoisyRescale()([torch.rand(3, 4, 4), torch.rand(1, 4, 4)])
    with pytest.raises(TypeError, match="floating"):
        NoisyRescale()(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


# -------------------------------------------------------------------------- LineEnhancement


def test_line_enhancement_module_matches_op_and_edges():
    m = LineEnhancement(sigma_sharpen=0.8, amount=1.2, sigma_edge=1.1, beta=0.3)
    x = torch.rand(2, 3, 11, 7)
    assert_close(m(x), line_enhance_reference(x, 0.8, 1.2, 1.1, 0.3), torch.float32)
    assert_close(m.edges(x), line_enhance_reference(x, 0.8, 1.2, 1.1, 1.0) - x, torch.float32)
    assert (m.edges(x) >= 0).all()
    assert "sigma_edge=1.1" in repr(m)
    with pytest.raises(ValueError, match="sigma_sharpen"):
        LineEnhancement(sigma_sharpen=0.0)


# -------------------------------------------------------------------------- StyleStatistics


def test_style_statistics_split_and_affine_invariance():
    levels = (1, 2, 4)
    st = StyleStatistics(levels, descriptor="both")
    f = torch.randn(2, 5, 13, 9, dtype=torch.float64)
    out = st(f)
    k = num_cells(levels)
    mean, var = multilevel_moments_reference(f, levels)
    assert_close(out.mean, mean, torch.float64)
    assert_close(out.log_std, 0.5 * torch.log(var + 1e-5), torch.float64)
    assert out.style.shape == (2, 10) and out.content.shape == (2, 2 * 5 * (k - 1))
    assert out.descriptor.shape == (2, st.descriptor_dim(5))
    # content is invariant to a per-channel affine change of style (up to the eps floor)
    scale = torch.rand(1, 5, 1, 1, dtype=torch.float64) * 3 + 0.5
    shifted = StyleStatistics(levels, eps=1e-12)(f * scale + 4.0)
    base = StyleStatistics(levels, eps=1e-12)(f)
    assert torch.allclose(shifted.content, base.content, atol=1e-8)
    assert not torch.allclose(shifted.style, base.style)
    for name, dim in [("content", 2 * 5 * (k - 1)), ("style", 10), ("pooled", 5)]:
        assert StyleStatistics(levels, descriptor=name)(f).descriptor.shape == (2, dim)
    with pytest.raises(ValueError, match="contain 1"):
        StyleStatistics((2, 4))


# ------------------------------------------------------------------------ ScaleConsistencyKL


def test_scale_kl_matches_f_kl_div_categorical_and_binary():
    torch.manual_seed(1)
    logits = [torch.randn(6, 4) * 2 for _ in range(3)]
    log_p = [F.log_softmax(z, -1) for z in logits]
    log_mean = torch.logsumexp(torch.stack(log_p), 0) - math.log(3)
    expected = sum(F.kl_div(log_mean, lp, reduction="batchmean", log_target=True) for lp in log_p) / 3
    got = ScaleConsistencyKL()(logits)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    none = ScaleConsistencyKL(reduction="none")(logits)
    assert none.shape == (3, 6)
    assert ScaleConsistencyKL(reduction="sum")(logits).item() == pytest.approx(none.sum().item(), rel=1e-5)
    # binary logits are two-class distributions [1 − σ(z), σ(z)]
    z = torch.randn(3, 5)
    two_class = torch.stack([torch.zeros_like(z), z], dim=-1)  # softmax([0, z]) = [1 − σ, σ]
    assert ScaleConsistencyKL()(z).item() == pytest.approx(ScaleConsistencyKL()(two_class).item(), rel=1e-5)
    assert ScaleConsistencyKL()(list(z.unsqueeze(-1))).item() == pytest.approx(ScaleConsistencyKL()(z).item())


def test_scale_kl_zero_when_scales_agree_and_gradients():
    z = torch.randn(4, 3)
    assert ScaleConsistencyKL()([z, z.clone(), z.clone()]).abs().item() < 1e-7
    a = torch.randn(8, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    ScaleConsistencyKL()([a, b]).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    a.grad = None
    b.grad = None
    ScaleConsistencyKL(detach_target=True)([a, b]).backward()
    assert torch.isfinite(a.grad).all()
    z64 = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ScaleConsistencyKL()(t), (z64,))
    with pytest.raises(ValueError, match="reduction"):
        ScaleConsistencyKL(reduction="mean")


# ------------------------------------------------------------------ MultiScaleStyleRetrospection


class BlurRetrospector(nn.Module):
    """A stand-in for a diffusion reconstruction: a 3×3 box blur with replicate borders."""

    def forward(self, x):
        c = x.shape[1]
        weight = torch.full((c, 1, 3, 3), 1.0 / 9.0, dtype=x.dtype, device=x.device)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=c)


def tiny_backbone(in_channels=3, channels=6):
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1)
    )


def _check_output(out: MSROutput, num_images: int, dim: int, num_scales: int):
    assert len(out.descriptors) == num_scales
    for d in out.descriptors:
        assert d.shape == (num_images, dim)
        assert torch.isfinite(d).all()
    assert out.fused.shape == (num_images, dim) and torch.isfinite(out.fused).all()
    assert out.stacked().shape == (num_scales, num_images, dim)
    assert out.scale_weights.sum().item() == pytest.approx(1.0)


def test_msr_on_mixed_odd_sizes_gives_finite_outputs_and_gradients():
    torch.manual_seed(0)
    backbone = tiny_backbone()
    msr = MultiScaleStyleRetrospection(
        backbone,
        BlurRetrospector(),
        rescale=NoisyRescale((0.5, 1.0, 2.0), min_side=5, seed=3),
        line_enhancement=LineEnhancement(impl="reference"),
        style_statistics=StyleStatistics(impl="reference"),
        fusion="learned",
        pixel_residual_levels=(1, 2, 4),
        impl="reference",
    )
    images = [
        torch.rand(3, 13, 21, requires_grad=True),
        torch.rand(3, 7, 5, requires_grad=True),
        torch.rand(3, 1, 1, requires_grad=True),
    ]
    out = msr(images)
    dim = msr.descriptor_dim(6)
    _check_output(out, 3, dim, 3)
    assert out.style is not None and len(out.features) == 3
    head = nn.Linear(dim, 1)
    per_scale = [head(d).squeeze(-1) for d in out.descriptors]
    loss = head(out.fused).sum() + ScaleConsistencyKL()(per_scale)
    loss.backward()
    for img in images:
        assert img.grad is not None and torch.isfinite(img.grad).all()
    for p in list(backbone.parameters()) + [msr.fusion_logits]:
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_msr_crops_mode_same_size_batch_and_stage_switches():
    x = torch.rand(2, 3, 23, 19)
    ref = dict(line_enhancement=LineEnhancement(impl="reference"), style_statistics=StyleStatistics(impl="reference"))
    for kwargs in [
        dict(rescale=NoisyRescale(output="crops", crop_size=8, seed=0)),
        dict(line_enhancement=None),
        dict(rescale=None),
        dict(style_statistics=None),
        dict(backbone_input="both"),
        dict(style_statistics=StyleStatistics(levels=(1, 2), descriptor="content", impl="reference")),
    ]:
        in_ch = 6 if kwargs.get("backbone_input") == "both" else 3
        kwargs = {"rescale": NoisyRescale(seed=0), **ref, **kwargs}
        msr = MultiScaleStyleRetrospection(tiny_backbone(in_ch), BlurRetrospector(), impl="reference", **kwargs).eval()
        out = msr(x)
        _check_output(out, 2, msr.descriptor_dim(6), len(msr.scales))
    # without a retrospector the backbone sees the (enhanced) image
    msr = MultiScaleStyleRetrospection(
        tiny_backbone(), None, backbone_input="image", line_enhancement=None, rescale=None, impl="reference"
    ).eval()
    out = msr(x)
    assert torch.equal(out.backbone_inputs[0][0], x)
    with pytest.raises(ValueError, match="retrospector"):
        MultiScaleStyleRetrospection(tiny_backbone(), None)
    with pytest.raises(TypeError, match="rescale must be a NoisyRescale"):
        MultiScaleStyleRetrospection(tiny_backbone(), BlurRetrospector(), rescale=(1.0, 2.0))


def test_msr_identity_retrospector_gives_zero_residual_and_mean_fusion():
    msr = MultiScaleStyleRetrospection(
        tiny_backbone(), lambda t: t, rescale=NoisyRescale((1.0, 0.5), noise_std=0.0),
        line_enhancement=LineEnhancement(impl="reference"), style_statistics=StyleStatistics(impl="reference"),
        impl="reference",
    ).eval()
    out = msr(torch.rand(1, 3, 9, 9))
    assert all(torch.count_nonzero(g) == 0 for g in out.backbone_inputs[0])
    assert_close(out.fused, (out.descriptors[0] + out.descriptors[1]) / 2, torch.float32)


@pytest.mark.kernel
def test_msr_fused_path_matches_reference_path(device):
    torch.manual_seed(0)
    backbone = tiny_backbone().to(device)
    x = torch.rand(1, 3, 9, 11, device=device)
    results = {}
    for impl in ("reference", "triton"):
        msr = MultiScaleStyleRetrospection(
            backbone, BlurRetrospector(), rescale=NoisyRescale((1.0,), noise_std=0.0),
            line_enhancement=LineEnhancement(impl=impl), style_statistics=StyleStatistics(impl=impl),
            pixel_residual_levels=(1, 2, 4), impl=impl,
        ).eval()
        xi = x.clone().requires_grad_()
        out = msr(xi)
        out.fused.sum().backward()
        results[impl] = (out.fused.detach(), xi.grad)
    assert_close(results["triton"][0], results["reference"][0], tol=tolerance_for(torch.float32, 10.0), name="fused")
    assert_close(results["triton"][1], results["reference"][1], tol=tolerance_for(torch.float32, 10.0), name="grad")


def test_eval_batches_go_to_the_backbone_and_line_enhancement_under_the_pixel_bound():
    """Memory of one call is bounded by pixels, not by the batch: the same descriptors either way."""
    torch.manual_seed(0)
    calls = []
    backbone = tiny_backbone()
    backbone.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape)))
    msr = MultiScaleStyleRetrospection(backbone, BlurRetrospector(), rescale=NoisyRescale((0.5, 1.0)),
                                       style_statistics=StyleStatistics(levels=(1, 2))).eval()
    images = [torch.rand(3, 24, 20) * 2 - 1 for _ in range(5)] + [torch.rand(3, 40, 36) * 2 - 1]
    with torch.no_grad():
        whole = msr(images)
        msr.backbone_call_pixels = 1000
        msr.line_enhancement.strip_pixels = 1000
        calls.clear()
        bounded = msr(images)
        # the same views, rescaled first (what HRRDetector.predict does to free the full-size images)
        again = msr(msr.rescale(images))
    assert calls and all(n * h * w <= 1000 or n == 1 for n, _, h, w in calls)
    assert any(n == 1 and h * w > 1000 for n, _, h, w in calls), "a view above the bound goes alone"
    for a, b, c in zip(whole.descriptors, bounded.descriptors, again.descriptors, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, b, rtol=0, atol=0)
    msr.train()  # training keeps the whole batch in one call (BatchNorm statistics are the batch's)
    calls.clear()
    msr(images)
    assert max(n for n, *_ in calls) == 5
