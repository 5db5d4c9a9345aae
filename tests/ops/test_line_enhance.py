"""Line enhancement: kernels vs closed forms, borders, scipy, step edges, gradcheck, fused vs reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hrrkit.ops import FusedUnavailableError
from hrrkit.ops.line_enhance import (
    FUSED_MAX_HALO,
    edge_gradients_reference,
    fold_indices,
    gaussian_derivative_kernel1d,
    gaussian_kernel1d,
    kernel_radius,
    line_enhance,
    line_enhance_reference,
)
from hrrkit.testing import assert_close, tolerance_for
from hrrkit.testing.strategies import make_tensor, odd_sizes, seeds

scipy_ndimage = pytest.importorskip("scipy.ndimage")


@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.0, 1.7, 3.2])
@pytest.mark.parametrize("truncate", [2.0, 3.0, 4.0])
def test_gaussian_kernels_match_closed_form_sums(sigma, truncate):
    r = kernel_radius(sigma, truncate)
    assert r == max(1, int(truncate * sigma + 0.5))
    g = gaussian_kernel1d(sigma, truncate)
    d = gaussian_derivative_kernel1d(sigma, truncate)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    w = torch.tensor([math.exp(-(v * v) / (2 * sigma * sigma)) for v in range(-r, r + 1)], dtype=torch.float64)
    assert_close(g, w / w.sum(), torch.float64)
    assert g.sum().item() == pytest.approx(1.0, abs=1e-15)
    assert torch.equal(g, g.flip(0))
    assert_close(d, t * w / (t * t * w).sum(), torch.float64)
    assert torch.equal(d, -d.flip(0))  # odd
    assert (t * d).sum().item() == pytest.approx(1.0, abs=1e-14)  # unit ramp response
    # sampled Gaussian variance tends to σ² once the kernel is wide and σ is not tiny
    if sigma >= 1.0 and truncate >= 4.0:
        assert (t * t * g).sum().item() == pytest.approx(sigma * sigma, rel=2e-3)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("pad", [0, 1, 4, 13])
def test_fold_indices_is_half_sample_symmetric_extension(n, pad):
    idx = fold_indices(n, pad).numpy()
    # numpy's "symmetric" pad applied repeatedly is the same periodic extension, for any pad
    expected = np.arange(n)
    while expected.size < n + 2 * pad:
        expected = np.pad(expected, min(expected.size, pad), mode="symmetric")
    grown = (expected.size - n) // 2
    np.testing.assert_array_equal(idx, expected[grown - pad : grown + n + pad])
    if n == 1:
        assert (idx == 0).all()


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 3), (4, 1), (5, 7), (13, 9)])
@pytest.mark.parametrize("amount", [0.0, 1.5])
def test_edge_gradients_match_scipy(shape, amount):
    """Independent reference: scipy.ndimage with mode='reflect' (half-sample symmetric)."""
    sigma1, sigma2, truncate = 0.9, 1.3, 3.0
    rng = np.random.default_rng(sum(shape))
    img = rng.normal(size=shape)
    blur = scipy_ndimage.gaussian_filter(img, sigma1, mode="reflect", truncate=truncate)
    sharp = img + amount * (img - blur)
    # scipy's first-order kernel is −t/σ²·G; ours is normalised to a unit ramp response
    r = kernel_radius(sigma2, truncate)
    t = np.arange(-r, r + 1)
    w = np.exp(-(t * t) / (2 * sigma2**2))
    factor = sigma2**2 * w.sum() / (t * t * w).sum()
    smooth_h = scipy_ndimage.gaussian_filter1d(sharp, sigma2, axis=0, mode="reflect", truncate=truncate)
    smooth_w = scipy_ndimage.gaussian_filter1d(sharp, sigma2, axis=1, mode="reflect", truncate=truncate)
    gx_scipy = factor * scipy_ndimage.gaussian_filter1d(
        smooth_h, sigma2, axis=1, order=1, mode="reflect", truncate=truncate
    )
    gy_scipy = factor * scipy_ndimage.gaussian_filter1d(
        smooth_w, sigma2, axis=0, order=1, mode="reflect", truncate=truncate
    )
    x = torch.from_numpy(img)[None, None]
    gx, gy = edge_gradients_reference(x, sigma1, amount, sigma2, truncate)
    assert_close(gx[0, 0], torch.from_numpy(gx_scipy), torch.float64, name="g_x")
    assert_close(gy[0, 0], torch.from_numpy(gy_scipy), torch.float64, name="g_y")


def test_step_edge_response_is_closed_form():
    """A vertical step of height h: without sharpening, the edge map is h·Σ_{t≥1} D[t] on the two
    columns beside the step, zero farther away than the kernel radius, constant along rows."""
    sigma, truncate, height, beta = 1.2, 3.0, 2.5, 0.7
    r = kernel_radius(sigma, truncate)
    x = torch.zeros(1, 1, 9, 24, dtype=torch.float64)
    x[..., 12:] = height
    out = line_enhance_reference(x, 1.0, 0.0, sigma, beta, truncate=truncate)
    edges = (out - x) / beta
    d = gaussian_derivative_kernel1d(sigma, truncate)
    slope = height * d[r + 1 :].sum().item()
    eps = 1e-6
    peak = (slope * slope + eps * eps) ** 0.5 - eps  # the ε-smoothed magnitude of |g_x|
    profile = edges[0, 0]
    assert torch.allclose(profile, profile[:1].expand_as(profile), atol=1e-12)  # same on every row
    assert profile[0, 11].item() == pytest.approx(peak, rel=1e-9)
    assert profile[0, 12].item() == pytest.approx(peak, rel=1e-9)
    assert profile[0, : 12 - r].abs().max().item() < 1e-12
    assert profile[0, 12 + r :].abs().max().item() < 1e-12
    # sharpening overshoots the step (a larger peak) but leaves flat regions alone
    sharp = (line_enhance_reference(x, 1.0, 1.0, sigma, beta, truncate=truncate) - x) / beta
    assert sharp[0, 0, 0, 12].item() > peak
    assert sharp[0, 0, 0, :3].abs().max().item() < 1e-12


def test_constant_image_and_zero_beta_are_identity():
    x = torch.full((2, 3, 5, 4), 0.25, dtype=torch.float64)
    assert torch.equal(line_enhance(x, 1.0, 2.0, 1.0, 3.0, impl="reference"), x)
    y = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    assert torch.equal(line_enhance(y, 1.0, 1.0, 1.0, 0.0, impl="reference"), y)


def test_channels_are_independent():
    x = torch.randn(2, 3, 11, 10, dtype=torch.float64)
    full = line_enhance_reference(x, 1.0, 1.0, 1.0, 0.5)
    for c in range(3):
        assert_close(full[:, c : c + 1], line_enhance_reference(x[:, c : c + 1], 1.0, 1.0, 1.0, 0.5), torch.float64)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 2, 2, 3), (2, 1, 6, 5)])
def test_reference_gradcheck_float64(shape):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: line_enhance_reference(t, 0.8, 1.3, 1.1, 0.6, eps=1e-3), (x,))


def test_argument_errors():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="sigma_sharpen"):
        line_enhance(x, sigma_sharpen=0.0)
    with pytest.raises(ValueError, match="sigma_edge"):
        line_enhance(x, sigma_edge=-1.0)
    with pytest.raises(ValueError, match="beta"):
        line_enhance(x, beta=float("nan"))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        line_enhance(torch.zeros(4, 4))
    with pytest.raises(TypeError, match="floating"):
        line_enhance(torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="impl"):
        line_enhance(x, impl="cuda")


def test_explicit_triton_without_interpreter_says_why(monkeypatch):
    # Triton decides at its own import whether its library functions (tl.sum, ...) are interpreted:
    # import it while TRITON_INTERPRET=1 is still set, or later kernel tests in this process break.
    pytest.importorskip("triton.language")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(FusedUnavailableError, match="TRITON_INTERPRET=1"):
        line_enhance(torch.zeros(1, 1, 4, 4), impl="triton")


def test_too_wide_halo_is_refused_by_triton_and_runs_reference_under_auto(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(1, 1, 5, 6)
    big = FUSED_MAX_HALO / 3.0  # r1 + r2 > FUSED_MAX_HALO at truncate 3
    with pytest.raises(FusedUnavailableError, match="halo"):
        line_enhance(x, big, 1.0, big, 0.5, impl="triton")
    assert_close(line_enhance(x, big, 1.0, big, 0.5), line_enhance_reference(x, big, 1.0, big, 0.5), torch.float32)


# ---------------------------------------------------------------- fused vs reference


@pytest.mark.kernel
@given(
    batch=st.sampled_from([1, 2]),
    channels=st.sampled_from([1, 3]),
    height=odd_sizes(1, 67),
    width=odd_sizes(1, 67),
    layout=st.sampled_from(["contiguous", "noncontiguous", "channels_last"]),
    sigma_sharpen=st.floats(0.4, 2.0),
    amount=st.floats(0.0, 2.0),
    sigma_edge=st.floats(0.4, 2.0),
    beta=st.floats(-1.0, 1.5),
    seed=seeds(),
)
def test_fused_matches_reference(
    device, dtype, batch, channels, height, width, layout, sigma_sharpen, amount, sigma_edge, beta, seed
):
    if dtype == torch.float64:
        pytest.skip("the fused kernel computes in float32")
    shape = (batch, channels, height, width)
    x = make_tensor(shape, dtype=dtype, device=device, layout=layout, seed=seed, low=0.0, high=1.0)
    x_ref = x.detach().double().requires_grad_()
    x.requires_grad_()
    args = (sigma_sharpen, amount, sigma_edge, beta)
    out = line_enhance(x, *args, impl="triton")
    ref = line_enhance_reference(x_ref, *args)
    tol = tolerance_for(dtype, scale=4.0)
    assert_close(out, ref, tol=tol, name="enhanced")
    grad = make_tensor(shape, device=device, seed=seed + 1).to(dtype)
    (gx,) = torch.autograd.grad(out, (x,), grad)
    (gx_ref,) = torch.autograd.grad(ref, (x_ref,), grad.double())
    assert gx.stride() == x.stride() or not x.is_contiguous()
    assert_close(gx, gx_ref, tol=tol, name="grad x")


@pytest.mark.kernel
def test_fused_wide_halo_and_empty_batch(device):
    x = torch.rand(1, 2, 19, 70, device=device, requires_grad=True)
    args = (2.0, 1.0, 3.0, 0.5)  # halo 6 + 9 = 15: block 64, tiles meet inside the image
    out = line_enhance(x, *args, impl="triton")
    x_ref = x.detach().double().requires_grad_()
    ref = line_enhance_reference(x_ref, *args)
    assert_close(out, ref, torch.float32)
    out.sum().backward()
    ref.sum().backward()
    assert_close(x.grad, x_ref.grad, torch.float32, name="grad x")
    empty = torch.empty(0, 3, 5, 5, device=device)
    assert line_enhance(empty, impl="triton").shape == empty.shape
