"""Fused = reference where an outside review found them apart (issue 20, item 4): non-finite inputs,
extreme magnitudes, empty feature dimensions, launch geometry and int32 offsets; and every fused
kernel writes every element it returns (outputs and scratch start poisoned)."""

from __future__ import annotations

import importlib

import pytest
import torch

from hrrkit.ops import (
    additive_expand,
    additive_expand_reference,
    correntropy_loss,
    line_enhance,
    line_enhance_reference,
    multilevel_moments,
    multilevel_moments_reference,
    residual_multilevel_moments,
    residual_multilevel_moments_reference,
)
from hrrkit.testing import assert_close, poisoned_allocations, tolerance_for
from hrrkit.testing.strategies import make_tensor

pytestmark = pytest.mark.kernel
LINE_ARGS = (1.0, 1.0, 1.0, 0.5)  # σ₁, a, σ₂, β: halo R = 3 + 3 = 6


def _finite_mask_and_values(out, ref, name):
    """Non-finite exactly where the reference is (NaN or ±inf may differ), finite values close."""
    out_fin, ref_fin = torch.isfinite(out), torch.isfinite(ref)
    assert torch.equal(out_fin, ref_fin), (
        f"{name}: {int((~out_fin).sum())} non-finite elements, reference {int((~ref_fin).sum())}"
    )
    assert_close(torch.where(out_fin, out, 0), torch.where(ref_fin, ref, 0).to(out.dtype), torch.float32, name=name)


# ---------------------------------------------------------------- line enhancement


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", [(17, 33), (0, 69), (39, 2)])
def test_line_enhance_non_finite_pixel_spreads_as_far_as_the_stencil(device, bad, where):
    x = torch.rand(1, 1, 40, 70, device=device)
    x[0, 0, where[0], where[1]] = bad
    out = line_enhance(x, *LINE_ARGS, impl="triton")
    ref = line_enhance_reference(x.double(), *LINE_ARGS)
    # the reference: a (2R + 1)² square around the pixel (mirrored at the borders), never a tile
    assert int((~torch.isfinite(ref)).sum()) <= 13 * 13
    _finite_mask_and_values(out, ref, "enhanced")


def test_line_enhance_nan_in_grad_out_stays_local(device):
    x = torch.rand(1, 1, 40, 70, device=device, requires_grad=True)
    x_ref = x.detach().double().requires_grad_()
    grad = torch.randn(1, 1, 40, 70, device=device)
    grad[0, 0, 20, 35] = float("nan")
    (gx,) = torch.autograd.grad(line_enhance(x, *LINE_ARGS, impl="triton"), (x,), grad)
    (gr,) = torch.autograd.grad(line_enhance_reference(x_ref, *LINE_ARGS), (x_ref,), grad.double())
    assert int((~torch.isfinite(gr)).sum()) <= 13 * 13
    _finite_mask_and_values(gx, gr, "grad x")


def test_line_enhance_many_planes_use_grid_axis_0():
    from hrrkit.kernels.line_enhance import _launch_geometry

    # B·C = 70,000 planes would exceed CUDA's 65,535 limit on grid axis 1
    _, tiles, grid = _launch_geometry((7, 10_000, 33, 65))
    assert len(grid) == 1 and grid[0] == 70_000 * tiles < 2**31 - 1


def test_line_enhance_int32_guard_is_the_largest_offset_formed():
    from hrrkit.kernels.line_enhance import _int32_safe, max_offset

    wide = torch.empty_strided((1, 1, 3, 4), (0, 0, 2**30, 1), device="meta")  # (H−1)·s_h = 2^31
    assert max_offset(wide.shape, wide.stride()) >= 2**31
    assert _int32_safe(wide).is_contiguous()
    ok = torch.empty_strided((1, 1, 3, 4), (0, 0, 2**29, 1), device="meta")
    assert _int32_safe(ok) is ok


# ---------------------------------------------------------------- moments


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_moments_non_finite_pixel_only_spoils_its_cells(device, bad):
    x = torch.randn(1, 2, 9, 11, device=device)
    x[0, 0, 1, 1] = bad
    x[0, 1, 8, 10] = bad
    mean, var = multilevel_moments(x, impl="triton")
    ref_mean, ref_var = multilevel_moments_reference(x.double())
    assert int(torch.isfinite(ref_mean).sum()) == 2 * 21 - 2 * 3  # 3 of 21 cells in each map
    assert_close(mean, ref_mean, torch.float32, name="mean")
    assert_close(var, ref_var, torch.float32, name="var")


def test_residual_moments_inf_only_spoils_its_cells(device):
    a, b = torch.randn(1, 2, 8, 7, device=device), torch.randn(1, 2, 8, 7, device=device)
    a[0, 0, 7, 0] = float("inf")
    out = residual_multilevel_moments(a, b, impl="triton")
    ref = residual_multilevel_moments_reference(a.double(), b.double())
    assert_close(out[0], ref[0], torch.float32, name="mean")
    assert_close(out[1], ref[1], torch.float32, name="var")


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_moments_large_offset_within_the_fp32_table(device, offset):
    gen = torch.Generator().manual_seed(3)
    x = (offset + torch.randn(1, 4, 40, 33, dtype=torch.float64, generator=gen)).float().to(device)
    x.requires_grad_()
    x_ref = x.detach().double().requires_grad_()
    out = multilevel_moments(x, impl="triton")
    ref = multilevel_moments_reference(x_ref)
    assert_close(out[0], ref[0], torch.float32, name="mean")
    assert_close(out[1], ref[1], torch.float32, name="var")
    g = (torch.randn(ref[0].shape, generator=gen), torch.randn(ref[1].shape, generator=gen))
    (gx,) = torch.autograd.grad(out, (x,), tuple(t.float().to(device) for t in g))
    (gr,) = torch.autograd.grad(ref, (x_ref,), tuple(t.to(device) for t in g))
    assert_close(gx, gr, torch.float32, name="grad x")


def test_moments_huge_magnitudes_do_not_overflow(device):
    # atoms of ~80 pixels: a 64-pixel tile's sum of squares, 64 · 9e36, is past float32's 3.4e38
    x = 3e18 * torch.randn(1, 2, 40, 33, device=device)
    mean, var = multilevel_moments(x, impl="triton")
    ref_mean, ref_var = multilevel_moments_reference(x.double())
    assert torch.isfinite(var).all()
    assert_close(mean, ref_mean, torch.float32, name="mean")
    assert_close(var, ref_var, torch.float32, name="var")


# ---------------------------------------------------------------- additive expansion


@pytest.mark.parametrize("basis", ["bspline", "rbf"])
def test_additive_zero_features(device, basis):
    h = torch.randn(4, 0, device=device, requires_grad=True)
    beta = torch.randn(0, 8, device=device, requires_grad=True)
    out = additive_expand(h, beta, basis=basis, impl="triton")
    ref = additive_expand_reference(h, beta, basis=basis)
    assert out.shape == ref.shape == (4, 0)
    gh, gb = torch.autograd.grad(out, (h, beta), torch.ones_like(out))
    assert gh.shape == (4, 0) and gb.shape == (0, 8)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("extrapolation", ["clamp", "linear"])
def test_additive_non_finite_coefficient_poisons_its_feature_in_both_paths(device, bad, extrapolation):
    h = torch.empty(6, 3, device=device).uniform_(-1.2, 1.2).requires_grad_()
    beta = torch.randn(3, 9, device=device)
    beta[1, 0] = bad  # basis 0's support is the far left: zero at most of these h
    beta.requires_grad_()
    kw = dict(basis="bspline", extrapolation=extrapolation)
    out = additive_expand(h, beta, **kw, impl="triton")
    h_ref, beta_ref = (t.detach().double().requires_grad_() for t in (h, beta))
    ref = additive_expand_reference(h_ref, beta_ref, **kw)
    # the whole feature is non-finite (NaN where the bad basis is zero, ±inf where it is not)
    assert (~torch.isfinite(ref[:, 1])).all() and torch.isfinite(ref[:, [0, 2]]).all()
    if bad != bad:  # NaN: the very same values
        assert_close(out, ref, torch.float32, name="g")
    else:
        _finite_mask_and_values(out, ref, "g")
    grad = torch.randn(6, 3, device=device)
    gh, gb = torch.autograd.grad(out, (h, beta), grad)
    gh_ref, gb_ref = torch.autograd.grad(ref, (h_ref, beta_ref), grad.double())
    _finite_mask_and_values(gh, gh_ref, "grad h")
    assert_close(gb, gb_ref, torch.float32, name="grad beta")


def test_additive_strided_view_beyond_int32_is_copied():
    from hrrkit.kernels.additive_expand import _int32_safe, max_offset

    view = torch.empty_strided((3, 5), (2**30, 1), device="meta")  # 15 elements, offsets to 2^31 + 4
    assert view.numel() < 2**31 <= max_offset(view)
    assert _int32_safe(view).is_contiguous()


# ---------------------------------------------------------------- correntropy


@pytest.mark.parametrize("impl", ["reference", "triton"])
@pytest.mark.parametrize("sigma", [1.9e19, 1e-20])
def test_correntropy_sigma_whose_square_overflows_is_refused_in_both_paths(impl, sigma):
    f, y = torch.randn(10), torch.ones(10)
    with pytest.raises(ValueError, match=r"sigma=.* squared does not fit torch.float32"):
        correntropy_loss(f, y, sigma=sigma, impl=impl)
    # float64 scores have the range to take it (reference only: the fused path is float32)
    if impl == "reference" and sigma > 1:
        assert torch.isfinite(correntropy_loss(f.double(), y.double(), sigma=sigma, impl=impl))


def test_correntropy_largest_accepted_sigma_is_finite_and_equal(device):
    f, y = torch.randn(50, device=device), torch.sign(torch.randn(50, device=device))
    sigma = 1.8e19
    out = correntropy_loss(f, y, sigma=sigma, impl="triton")
    ref = correntropy_loss(f.double(), y.double(), sigma=sigma, impl="reference")
    assert torch.isfinite(out)
    assert_close(out, ref, torch.float32)


# ---------------------------------------------------------------- every element written


def _poisoned(module_name, fn):
    with poisoned_allocations(importlib.import_module(module_name)):
        return fn()


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_fused_kernels_write_every_element(device, layout):
    """Outputs and scratch start NaN; a forgotten element would survive into the result."""
    x = make_tensor((2, 3, 21, 67), device=device, layout=layout, seed=1, low=0.0, high=1.0, requires_grad=True)

    def run_line():
        out = line_enhance(x, *LINE_ARGS, impl="triton")
        return (out, *torch.autograd.grad(out, (x,), torch.ones_like(out)))

    def run_moments():
        out = multilevel_moments(x, impl="triton")
        return (*out, *torch.autograd.grad(out, (x,), tuple(torch.ones_like(o) for o in out)))

    h = make_tensor((37, 45), device=device, seed=2, low=-1.2, high=1.2, requires_grad=True)
    beta = make_tensor((45, 11), device=device, seed=3, requires_grad=True)

    def run_additive(basis):
        def run():
            out = additive_expand(h, beta, basis=basis, impl="triton")
            return (out, *torch.autograd.grad(out, (h, beta), torch.ones_like(out)))

        return run

    f = make_tensor((1500,), device=device, seed=4, requires_grad=True)
    y = torch.sign(make_tensor((1500,), device=device, seed=5))

    def run_correntropy():
        out = correntropy_loss(f, y, reduction="none", impl="triton")
        return (out, *torch.autograd.grad(out, (f,), torch.ones_like(out)))

    cases = [
        ("hrrkit.kernels.line_enhance", run_line),
        ("hrrkit.kernels.multilevel_moments", run_moments),
        ("hrrkit.kernels.additive_expand", run_additive("bspline")),
        ("hrrkit.kernels.additive_expand", run_additive("rbf")),
        ("hrrkit.kernels.correntropy", run_correntropy),
    ]
    for module_name, run in cases:
        clean = run()
        poisoned = _poisoned(module_name, run)
        for i, (a, b) in enumerate(zip(poisoned, clean)):
            assert torch.isfinite(a).all(), f"{module_name}: output {i} has unwritten (NaN) elements"
            assert_close(a, b, tol=tolerance_for(torch.float32), name=f"{module_name} output {i}")
