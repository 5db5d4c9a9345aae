"""Multi-level moments: cell geometry, torch.var_mean per cell, adaptive pooling, stability,
gradcheck, fused vs reference (plain and residual)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from hrrkit.ops import FusedUnavailableError
from hrrkit.ops.moments import (
    cell_bounds,
    cell_boxes,
    multilevel_moments,
    multilevel_moments_reference,
    num_cells,
    residual_multilevel_moments,
    residual_multilevel_moments_reference,
)
from hrrkit.testing import assert_close, tolerance_for
from hrrkit.testing.strategies import make_tensor, odd_sizes, seeds


@pytest.mark.parametrize("length", [1, 2, 3, 5, 7, 56, 67])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_cell_bounds_cover_and_are_never_empty(length, n):
    bounds = cell_bounds(length, n)
    assert len(bounds) == n
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    for i, (start, stop) in enumerate(bounds):
        assert stop > start
        assert start == (i * length) // n
        assert stop == -(-(i + 1) * length // n)
    covered = set()
    for start, stop in bounds:
        covered.update(range(start, stop))
    assert covered == set(range(length))
    if length % n == 0:  # divisible: an exact partition into equal cells
        assert all(stop - start == length // n for start, stop in bounds)


@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (1, 2, 3, 5), (2, 4, 7, 9), (1, 1, 13, 2)])
def test_reference_matches_var_mean_per_cell_and_adaptive_pool(shape):
    levels = (1, 2, 4)
    x = torch.randn(shape, dtype=torch.float64)
    mean, var = multilevel_moments_reference(x, levels)
    assert mean.shape == var.shape == (shape[0], shape[1], num_cells(levels))
    boxes = cell_boxes(shape[2], shape[3], levels)
    for k, (top, bottom, left, right) in enumerate(boxes):
        v, m = torch.var_mean(x[:, :, top:bottom, left:right], dim=(2, 3), unbiased=False)
        assert_close(mean[..., k], m, torch.float64)
        assert_close(var[..., k], v, torch.float64)
    # independent: cell means are adaptive average pooling; E[x²] − E[x]² for the variance
    start = 0
    for n in levels:
        pooled = F.adaptive_avg_pool2d(x, n).flatten(2)
        pooled_sq = F.adaptive_avg_pool2d(x * x, n).flatten(2)
        assert_close(mean[..., start : start + n * n], pooled, torch.float64)
        assert_close(
            var[..., start : start + n * n], (pooled_sq - pooled**2).clamp_min(0), tol=tolerance_for(torch.float64, 1e3)
        )
        start += n * n


def test_levels_order_and_custom_levels():
    x = torch.arange(36, dtype=torch.float64).view(1, 1, 6, 6)
    mean, var = multilevel_moments_reference(x, (1, 3))
    assert mean.shape == (1, 1, 10)
    assert mean[0, 0, 0].item() == pytest.approx(17.5)
    assert mean[0, 0, 1].item() == pytest.approx(x[0, 0, :2, :2].mean().item())  # top-left 3×3 cell
    assert mean[0, 0, 9].item() == pytest.approx(x[0, 0, 4:, 4:].mean().item())  # bottom-right
    assert var[0, 0, 0].item() == pytest.approx(x.var(unbiased=False).item())


def test_residual_reference_is_moments_of_abs_difference():
    a, b = torch.randn(2, 3, 9, 7, dtype=torch.float64), torch.randn(2, 3, 9, 7, dtype=torch.float64)
    got = residual_multilevel_moments_reference(a, b)
    want = multilevel_moments_reference((a - b).abs())
    assert_close(got[0], want[0], torch.float64)
    assert_close(got[1], want[1], torch.float64)


def test_reference_gradcheck_float64():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: multilevel_moments_reference(t, (1, 2, 4)), (x,))
    a = torch.randn(1, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, q: residual_multilevel_moments_reference(p, q, (1, 2)), (a, b))


def test_argument_errors():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="levels"):
        multilevel_moments(x, levels=(1, 0))
    with pytest.raises(ValueError, match="levels"):
        multilevel_moments(x, levels=())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        multilevel_moments(torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="floating"):
        multilevel_moments(torch.zeros(1, 1, 2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="same shape"):
        residual_multilevel_moments(x, torch.zeros(1, 2, 4, 5))


def test_explicit_triton_without_interpreter_says_why(monkeypatch):
    # Triton decides at its own import whether its library functions (tl.sum, ...) are interpreted:
    # import it while TRITON_INTERPRET=1 is still set, or later kernel tests in this process break.
    pytest.importorskip("triton.language")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(FusedUnavailableError, match="TRITON_INTERPRET=1"):
        multilevel_moments(torch.zeros(1, 1, 4, 4), impl="triton")


# ---------------------------------------------------------------- fused vs reference


def _compare(out, ref, dtype, name):
    # moments of a rounded input are compared with float64 moments of the same rounded input
    tol = tolerance_for(torch.float32, scale=4.0)
    assert_close(out[0], ref[0], tol=tol, name=f"{name} mean")
    assert_close(out[1], ref[1], tol=tol, name=f"{name} var")


@pytest.mark.kernel
@given(
    batch=st.sampled_from([1, 2]),
    channels=st.sampled_from([1, 3, 17]),
    height=odd_sizes(1, 67),
    width=odd_sizes(1, 67),
    layout=st.sampled_from(["contiguous", "noncontiguous", "channels_last"]),
    levels=st.sampled_from([(1, 2, 4), (1,), (2, 3)]),
    offset=st.sampled_from([0.0, 50.0]),
    seed=seeds(),
)
def test_fused_matches_reference(device, dtype, batch, channels, height, width, layout, levels, offset, seed):
    if dtype == torch.float64:
        pytest.skip("the fused kernel computes in float32")
    shape = (batch, channels, height, width)
    x = make_tensor(shape, dtype=dtype, device=device, layout=layout, seed=seed, low=offset - 2, high=offset + 2)
    x_ref = x.detach().double().requires_grad_()
    x.requires_grad_()
    out = multilevel_moments(x, levels, impl="triton")
    ref = multilevel_moments_reference(x_ref, levels)
    assert out[0].dtype == torch.float32
    _compare(out, ref, dtype, "moments")
    g_mean = make_tensor(ref[0].shape, device=device, seed=seed + 1)
    g_var = make_tensor(ref[1].shape, device=device, seed=seed + 2)
    (gx,) = torch.autograd.grad(out, (x,), (g_mean, g_var))
    (gx_ref,) = torch.autograd.grad(ref, (x_ref,), (g_mean.double(), g_var.double()))
    assert_close(gx, gx_ref, tol=tolerance_for(dtype, scale=4.0), name="grad x")


@pytest.mark.kernel
@given(
    channels=st.sampled_from([1, 2, 19]),
    height=odd_sizes(1, 67),
    width=odd_sizes(1, 67),
    layout_a=st.sampled_from(["contiguous", "channels_last"]),
    layout_b=st.sampled_from(["contiguous", "noncontiguous"]),
    seed=seeds(),
)
def test_fused_residual_matches_reference(device, dtype, channels, height, width, layout_a, layout_b, seed):
    if dtype == torch.float64:
        pytest.skip("the fused kernel computes in float32")
    shape = (1, channels, height, width)
    a = make_tensor(shape, dtype=dtype, device=device, layout=layout_a, seed=seed)
    b = make_tensor(shape, dtype=dtype, device=device, layout=layout_b, seed=seed + 1)
    b.data[..., :1, :] = a.data[..., :1, :]  # exact ties: |·| has gradient 0 there
    a_ref, b_ref = (t.detach().double().requires_grad_() for t in (a, b))
    a.requires_grad_()
    b.requires_grad_()
    out = residual_multilevel_moments(a, b, impl="triton")
    ref = residual_multilevel_moments_reference(a_ref, b_ref)
    _compare(out, ref, dtype, "residual moments")
    g_mean = make_tensor(ref[0].shape, device=device, seed=seed + 2)
    g_var = make_tensor(ref[1].shape, device=device, seed=seed + 3)
    ga, gb = torch.autograd.grad(out, (a, b), (g_mean, g_var))
    ga_ref, gb_ref = torch.autograd.grad(ref, (a_ref, b_ref), (g_mean.double(), g_var.double()))
    tol = tolerance_for(dtype, scale=4.0)
    assert_close(ga, ga_ref, tol=tol, name="grad a")
    assert_close(gb, gb_ref, tol=tol, name="grad b")


@pytest.mark.kernel
def test_fused_is_stable_for_large_offsets(device):
    """Naive E[x²] − E[x]² in float32 loses every digit here; shifted Chan merging does not (and
    stays within the plain fp32 table)."""
    x = (1e4 + torch.randn(2, 5, 33, 31, dtype=torch.float64)).float().to(device)
    mean, var = multilevel_moments(x, impl="triton")
    ref_mean, ref_var = multilevel_moments_reference(x.double())
    assert_close(mean, ref_mean, torch.float32, name="mean")
    assert_close(var, ref_var, torch.float32, name="var")
    naive = (x * x).mean((2, 3)) - x.mean((2, 3)) ** 2
    assert (naive - ref_var[..., 0]).abs().max() > 100 * (var[..., 0] - ref_var[..., 0]).abs().max()


@pytest.mark.kernel
def test_fused_deep_pyramid_on_odd_size(device):
    x = torch.randn(1, 2, 13, 11, device=device, requires_grad=True)
    levels = (1, 2, 4, 8)
    out = multilevel_moments(x, levels, impl="triton")
    x_ref = x.detach().double().requires_grad_()
    ref = multilevel_moments_reference(x_ref, levels)
    _compare(out, ref, torch.float32, "moments")
    (out[0].sum() + out[1].sum()).backward()
    (ref[0].sum() + ref[1].sum()).backward()
    assert_close(x.grad, x_ref.grad, torch.float32, name="grad x")


@pytest.mark.kernel
def test_fused_only_grad_of_one_output(device):
    x = torch.randn(1, 3, 9, 10, device=device, requires_grad=True)
    mean, _ = multilevel_moments(x, impl="triton")
    mean.sum().backward()
    x_ref = x.detach().double().requires_grad_()
    multilevel_moments_reference(x_ref)[0].sum().backward()
    assert_close(x.grad, x_ref.grad, torch.float32)
