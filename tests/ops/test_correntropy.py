"""Correntropy-induced loss: reference checks (closed form, limits, gradcheck) and fused-vs-reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hrrkit.nn import CorrentropyLoss
from hrrkit.ops import FusedUnavailableError, correntropy_loss, correntropy_loss_reference
from hrrkit.testing import assert_close, tolerance_for
from hrrkit.testing.strategies import make_tensor, seeds, shapes


def test_closed_form_values():
    f = torch.tensor([1.0, 0.0, -1.0, 3.0], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    sigma = 2.0
    u = [0.0, 1.0, 2.0, 4.0]
    expected = torch.tensor([sigma**2 * (1 - math.exp(-(v * v) / sigma**2)) for v in u], dtype=torch.float64)
    out = correntropy_loss_reference(f, y, sigma, "none")
    assert_close(out, expected, torch.float64)
    assert correntropy_loss_reference(f, y, sigma, "sum").item() == pytest.approx(expected.sum().item(), rel=1e-12)
    assert correntropy_loss_reference(f, y, sigma, "mean").item() == pytest.approx(expected.mean().item(), rel=1e-12)


def test_zero_at_margin_one_and_bounded_by_sigma_squared():
    y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert torch.all(correntropy_loss_reference(y.clone(), y, 0.7, "none") == 0)
    f = torch.linspace(-1e4, 1e4, 10001, dtype=torch.float64)
    for sigma in (0.1, 1.0, 5.0):
        loss = correntropy_loss_reference(f, torch.ones_like(f), sigma, "none")
        assert torch.all(loss <= sigma**2) and torch.all(loss >= 0)
        assert loss.max().item() == pytest.approx(sigma**2, rel=1e-9)  # far outliers saturate


@pytest.mark.parametrize("sigma", [10.0, 1e2, 1e4])
def test_large_sigma_approaches_squared_loss(sigma):
    f = torch.linspace(-2, 2, 101, dtype=torch.float64)
    y = torch.where(torch.arange(101) % 2 == 0, 1.0, -1.0).double()
    squared = (1 - y * f) ** 2
    loss = correntropy_loss_reference(f, y, sigma, "none")
    # σ²(1 − e^{−z}) = u²(1 − z/2 + …) with z = u²/σ²: relative gap ≤ max(u²)/(2σ²)
    gap = ((loss - squared).abs() / squared.clamp_min(1e-300)).max().item()
    assert gap <= 9.0 / (2 * sigma**2) * 1.01


def test_reference_gradcheck_float64():
    f = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    y = (torch.randint(0, 2, (7, 3)).double() * 2 - 1).requires_grad_()
    for reduction in ("none", "mean", "sum"):
        assert torch.autograd.gradcheck(lambda a, b: correntropy_loss_reference(a, b, 1.3, reduction), (f, y))


def test_reference_grad_matches_closed_form():
    f = torch.randn(50, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (50,)).double() * 2 - 1
    sigma = 0.8
    correntropy_loss_reference(f, y, sigma, "sum").backward()
    u = 1 - y * f.detach()
    expected = -2 * u * y * torch.exp(-(u**2) / sigma**2)
    assert_close(f.grad, expected, torch.float64)


def test_argument_errors():
    f = torch.zeros(3)
    with pytest.raises(ValueError, match="sigma"):
        correntropy_loss(f, f, sigma=0.0)
    with pytest.raises(ValueError, match="reduction"):
        correntropy_loss(f, f, reduction="max")
    with pytest.raises(ValueError, match="impl"):
        correntropy_loss(f, f, impl="cuda")
    with pytest.raises(TypeError, match="floating"):
        correntropy_loss(torch.zeros(3, dtype=torch.long), f)


def test_module_binary_targets_match_signed():
    logits = torch.randn(64)
    t = torch.randint(0, 2, (64,))
    a = CorrentropyLoss(sigma=1.5)(logits, t)
    b = CorrentropyLoss(sigma=1.5, target_format="signed")(logits, t.float() * 2 - 1)
    assert_close(a, b, torch.float32)
    assert "sigma=1.5" in repr(CorrentropyLoss(sigma=1.5))


# ---------------------------------------------------------------- fused vs reference


@pytest.mark.kernel
@given(
    shape=st.one_of(shapes(1, 1, 3000), shapes(2, 1, 67), shapes(3, 1, 17)),
    layout=st.sampled_from(["contiguous", "noncontiguous"]),
    sigma=st.floats(0.05, 50.0),
    reduction=st.sampled_from(["none", "mean", "sum"]),
    scale=st.sampled_from([0.5, 3.0, 30.0]),
    seed=seeds(),
)
def test_fused_matches_reference(device, dtype, shape, layout, sigma, reduction, scale, seed):
    if dtype == torch.float64:
        pytest.skip("the fused kernel computes in float32")
    f = make_tensor(shape, dtype=dtype, device=device, layout=layout, seed=seed, low=-scale, high=scale)
    y = (make_tensor(shape, device=device, layout=layout, seed=seed + 1) > 0).to(dtype) * 2 - 1
    f_ref = f.detach().double().requires_grad_()
    y_ref = y.detach().double().requires_grad_()
    f.requires_grad_()
    y.requires_grad_()
    out = correntropy_loss(f, y, sigma, reduction, impl="triton")
    ref = correntropy_loss_reference(f_ref, y_ref, sigma, reduction)
    # outputs rounded to the input dtype; long sums accumulate rounding of that dtype
    tol = tolerance_for(dtype, scale=4.0)
    assert_close(out, ref, tol=tol, name="loss")
    grad = make_tensor(out.shape, device=device, seed=seed + 2).to(dtype)
    gf, gy = torch.autograd.grad(out, (f, y), grad)
    gf_ref, gy_ref = torch.autograd.grad(ref, (f_ref, y_ref), grad.double())
    assert_close(gf, gf_ref, tol=tol, name="grad logits")
    assert_close(gy, gy_ref, tol=tol, name="grad targets")


@pytest.mark.kernel
def test_fused_integer_targets_and_no_target_grad(device):
    f = torch.randn(129, device=device, requires_grad=True)
    y = torch.randint(0, 2, (129,), device=device) * 2 - 1
    out = correntropy_loss(f, y, 1.0, "mean", impl="triton")
    ref = correntropy_loss_reference(f.detach().double(), y.double(), 1.0, "mean")
    assert_close(out, ref, torch.float32)
    out.backward()
    assert torch.isfinite(f.grad).all()


@pytest.mark.kernel
def test_fused_empty_input(device):
    f = torch.empty(0, device=device)
    assert correntropy_loss(f, f, 1.0, "sum", impl="triton").item() == 0.0
    assert correntropy_loss(f, f, 1.0, "none", impl="triton").shape == (0,)


def test_explicit_triton_on_cpu_without_interpreter_says_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    f = torch.randn(4)
    with pytest.raises(FusedUnavailableError, match="TRITON_INTERPRET=1"):
        correntropy_loss(f, torch.ones(4), impl="triton")
    # auto never raises: it runs the reference and gives the same number
    assert_close(correntropy_loss(f, torch.ones(4)), correntropy_loss_reference(f, torch.ones(4)), torch.float32)


def test_broadcast_runs_reference_under_auto_and_errors_under_triton(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    f = torch.randn(4, 3)
    y = torch.ones(3)
    out = correntropy_loss(f, y)  # auto: fused cannot broadcast, reference runs
    assert_close(out, correntropy_loss_reference(f, y), torch.float32)
    with pytest.raises(FusedUnavailableError, match="differ in shape"):
        correntropy_loss(f, y, impl="triton")
