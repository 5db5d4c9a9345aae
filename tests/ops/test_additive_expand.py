"""Additive basis expansion: the reference against scipy and closed forms, gradcheck, and the fused
Triton kernels against the reference (forward, grad h, grad beta)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.interpolate import BSpline

from hrrkit.ops import FusedUnavailableError, additive_basis, additive_expand, additive_expand_reference
from hrrkit.ops._dispatch import triton_import_error
from hrrkit.ops.additive import bspline_knots, rbf_centres
from hrrkit.testing import Tolerance, assert_close, tolerance_for
from hrrkit.testing.strategies import make_tensor, odd_sizes, seeds

# ---------------------------------------------------------------- the reference is the spec


@pytest.mark.parametrize("K", [4, 5, 8, 16, 32])
@pytest.mark.parametrize(("lo", "hi"), [(-1.0, 1.0), (0.0, 1.0), (-3.0, 0.5)])
def test_bspline_basis_matches_scipy_design_matrix(K, lo, hi):
    knots = bspline_knots(K, lo, hi).numpy()
    x = np.concatenate([np.linspace(lo, hi, 257), np.random.default_rng(K).uniform(lo, hi, 200)])
    expected = BSpline.design_matrix(x, knots, 3).toarray()
    ours = additive_basis(torch.from_numpy(x), K, basis="bspline", lo=lo, hi=hi)
    assert ours.shape == (x.size, K)
    assert_close(ours, torch.from_numpy(expected), torch.float64, name="B-spline basis")


def test_each_bspline_basis_is_scipys_basis_element():
    K, lo, hi = 7, -1.0, 1.0
    knots = bspline_knots(K, lo, hi).numpy()
    x = np.linspace(lo, hi, 401)
    ours = additive_basis(torch.from_numpy(x), K, lo=lo, hi=hi).numpy()
    for k in range(K):
        element = BSpline.basis_element(knots[k : k + 5], extrapolate=False)
        expected = np.nan_to_num(element(x))  # NaN outside its support
        np.testing.assert_allclose(ours[:, k], expected, atol=1e-12, err_msg=f"basis {k}")


def test_bspline_partition_of_unity_and_linear_reproduction():
    K, lo, hi = 9, -2.0, 3.0
    x = torch.linspace(lo, hi, 501, dtype=torch.float64)
    phi = additive_basis(x, K, lo=lo, hi=hi)
    assert_close(phi.sum(-1), torch.ones_like(x), torch.float64, name="Σ_k φ_k")
    # cubic B-splines reproduce straight lines with the Greville abscissae (here the peaks)
    greville = lo + (torch.arange(K, dtype=torch.float64) - 1) * (hi - lo) / (K - 3)
    assert_close(phi @ greville, x, torch.float64, name="Σ_k ξ_k φ_k(x)")
    assert (phi >= 0).all() and ((phi > 0).sum(-1) <= 4).all()


def test_rbf_basis_closed_form_and_default_width():
    K, lo, hi = 6, -1.0, 1.5
    x = torch.linspace(lo, hi, 77, dtype=torch.float64)
    centres = rbf_centres(K, lo, hi)
    assert centres[0] == lo and abs(centres[-1].item() - hi) < 1e-12
    spacing = (hi - lo) / (K - 1)
    for width, w in ((None, spacing), (0.3, 0.3)):
        expected = torch.exp(-((x[:, None] - centres[None, :]) ** 2) / (2 * w * w))
        ours = additive_basis(x, K, basis="rbf", lo=lo, hi=hi, rbf_width=width)
        assert_close(ours, expected, torch.float64, name=f"RBF width={width}")


@pytest.mark.parametrize("basis", ["bspline", "rbf"])
def test_clamp_rule_is_constant_outside_the_range(basis):
    K, lo, hi = 8, -1.0, 1.0
    beta = torch.randn(3, K, dtype=torch.float64)
    outside = torch.tensor([[-5.0, -1.5, 1.0001], [1.7, 40.0, -1.0000001]], dtype=torch.float64)
    g = additive_expand_reference(outside, beta, basis=basis)
    g_edge = additive_expand_reference(outside.clamp(lo, hi), beta, basis=basis)
    assert_close(g, g_edge, torch.float64)
    h = outside.clone().requires_grad_()
    additive_expand_reference(h, beta, basis=basis).sum().backward()
    assert (h.grad == 0).all(), "no gradient flows to h outside [lo, hi] under clamp"


@pytest.mark.parametrize("basis", ["bspline", "rbf"])
def test_linear_rule_is_the_boundary_tangent(basis):
    K, lo, hi = 8, -1.0, 1.0
    beta = torch.randn(2, K, dtype=torch.float64)
    edges = torch.tensor([[lo, hi]], dtype=torch.float64).requires_grad_()
    g_edge = additive_expand_reference(edges, beta, basis=basis, extrapolation="linear")
    (slope,) = torch.autograd.grad(g_edge.sum(), edges)
    # one-sided finite-difference slopes from inside the range agree with the tangent slope
    eps = 1e-6
    inside = torch.tensor([[lo + eps, hi - eps]], dtype=torch.float64)
    fd = (additive_expand_reference(inside, beta, basis=basis) - g_edge.detach()) / torch.tensor([[eps, -eps]])
    assert_close(slope, fd, tol=Tolerance(rel=1e-5, atol=1e-5, rtol=1e-5), name="boundary slope")
    for dist in (0.3, 2.0, 17.0):
        far = torch.tensor([[lo - dist, hi + dist]], dtype=torch.float64)
        g = additive_expand_reference(far, beta, basis=basis, extrapolation="linear")
        expected = g_edge.detach() + slope * torch.tensor([[-dist, dist]], dtype=torch.float64)
        assert_close(g, expected, torch.float64, name=f"tangent at distance {dist}")
    # inside the range the two rules agree exactly
    x = torch.rand(5, 2, dtype=torch.float64) * 2 - 1
    assert torch.equal(
        additive_expand_reference(x, beta, basis=basis, extrapolation="linear"),
        additive_expand_reference(x, beta, basis=basis, extrapolation="clamp"),
    )


@pytest.mark.parametrize("basis", ["bspline", "rbf"])
@pytest.mark.parametrize("extrapolation", ["clamp", "linear"])
def test_reference_gradcheck_float64(basis, extrapolation):
    h = (torch.rand(4, 3, dtype=torch.float64) * 3 - 1.5).requires_grad_()  # inside and outside [-1, 1]
    beta = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: additive_expand_reference(a, b, basis=basis, extrapolation=extrapolation, lo=-1.0, hi=1.0)
    assert torch.autograd.gradcheck(fn, (h, beta))
    assert torch.autograd.gradgradcheck(fn, (h, beta))


def test_leading_dimensions_are_batch_dimensions():
    beta = torch.randn(5, 8)
    h = torch.randn(2, 3, 4, 5)
    g = additive_expand(h, beta, impl="reference")
    assert g.shape == h.shape
    assert_close(g.reshape(-1, 5), additive_expand(h.reshape(-1, 5), beta, impl="reference"), torch.float32)
    # one dimension only: a single feature vector
    assert_close(additive_expand(h[0, 0, 0], beta, impl="reference"), g[0, 0, 0], torch.float32)


def test_output_dtype_promotes_and_half_inputs_compute_in_float32():
    beta = torch.randn(4, 8)
    h = torch.rand(3, 4).to(torch.bfloat16)
    g = additive_expand(h, beta, impl="reference")
    assert g.dtype == torch.float32
    assert_close(g, additive_expand(h.float(), beta, impl="reference"), torch.float32)
    assert additive_expand(h, beta.to(torch.bfloat16), impl="reference").dtype == torch.bfloat16


def test_argument_errors():
    h, beta = torch.zeros(2, 3), torch.zeros(3, 8)
    with pytest.raises(ValueError, match="D=3 .* 4 rows"):
        additive_expand(h, torch.zeros(4, 8))
    with pytest.raises(ValueError, match=r"\(D, K\)"):
        additive_expand(h, torch.zeros(3))
    with pytest.raises(ValueError, match="K >= 4"):
        additive_expand(h, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="K >= 2"):
        additive_expand(h, torch.zeros(3, 1), basis="rbf")
    with pytest.raises(ValueError, match="basis"):
        additive_expand(h, beta, basis="fourier")
    with pytest.raises(ValueError, match="extrapolation"):
        additive_expand(h, beta, extrapolation="wrap")
    with pytest.raises(ValueError, match="lo < hi"):
        additive_expand(h, beta, lo=1.0, hi=1.0)
    with pytest.raises(ValueError, match="rbf_width"):
        additive_expand(h, beta, basis="rbf", rbf_width=0.0)
    with pytest.raises(ValueError, match="only meaningful"):
        additive_expand(h, beta, rbf_width=0.5)
    with pytest.raises(TypeError, match="floating"):
        additive_expand(h.long(), beta)
    with pytest.raises(ValueError, match="impl"):
        additive_expand(h, beta, impl="cuda")


def test_explicit_triton_says_why_it_cannot_run(monkeypatch):
    h, beta = torch.zeros(2, 3), torch.zeros(3, 8)
    # Triton decides when it is first imported whether its own jit helpers (tl.sum, tl.zeros)
    # are interpreted; import it now, under the test session's TRITON_INTERPRET=1, so that
    # unsetting the variable below cannot leak into later kernel tests.
    assert triton_import_error() is None
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(FusedUnavailableError, match="TRITON_INTERPRET=1"):
        additive_expand(h, beta, impl="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(FusedUnavailableError, match="K <= 64"):
        additive_expand(h, torch.zeros(3, 65), impl="triton")
    with pytest.raises(FusedUnavailableError, match="float64"):
        additive_expand(h.double(), beta.double(), impl="triton")
    # auto never raises: float64 runs the reference
    assert additive_expand(h.double(), beta.double()).dtype == torch.float64


# ---------------------------------------------------------------- fused vs reference


def _tolerance(dtype: torch.dtype, ref: torch.Tensor) -> Tolerance:
    """Relative tolerance of the dtype; the element-wise floor scales with the output's size,
    because terms of magnitude ~max|ref| cancel in sums over K (and over rows for grad β)."""
    base = tolerance_for(dtype, scale=2.0)
    return Tolerance(rel=base.rel, atol=base.atol * max(ref.abs().max().item(), 1.0), rtol=base.rtol)


def _check_fused(h, beta, grad, **kwargs):
    h_ref = h.detach().double().requires_grad_()
    beta_ref = beta.detach().double().requires_grad_()
    h = h.detach().requires_grad_()
    beta = beta.detach().requires_grad_()
    out = additive_expand(h, beta, impl="triton", **kwargs)
    ref = additive_expand_reference(h_ref, beta_ref, **kwargs)
    assert out.dtype == torch.promote_types(h.dtype, beta.dtype) and out.shape == h.shape
    dtype = h.dtype
    assert_close(out, ref, tol=_tolerance(dtype, ref), name="g")
    gh, gb = torch.autograd.grad(out, (h, beta), grad)
    gh_ref, gb_ref = torch.autograd.grad(ref, (h_ref, beta_ref), grad.double())
    assert gh.dtype == h.dtype and gb.dtype == beta.dtype
    assert_close(gh, gh_ref, tol=_tolerance(dtype, gh_ref), name="grad h")
    assert_close(gb, gb_ref, tol=_tolerance(dtype, gb_ref), name="grad beta")


@st.composite
def _problem(draw):
    rows = draw(st.sampled_from([1, 3, 257]))
    # keep D small for 257 rows so the interpreter stays fast
    features = draw(odd_sizes(1, 9) if rows == 257 else odd_sizes(1, 67))
    return rows, features


@pytest.mark.kernel
@given(
    problem=_problem(),
    K=st.sampled_from([4, 8, 16, 32]),
    basis=st.sampled_from(["bspline", "rbf"]),
    extrapolation=st.sampled_from(["clamp", "linear"]),
    span=st.sampled_from(["inside", "outside"]),
    bounds=st.sampled_from([(-1.0, 1.0), (0.0, 1.0), (-2.5, 4.0)]),
    layout=st.sampled_from(["contiguous", "noncontiguous"]),
    seed=seeds(),
)
def test_fused_matches_reference(device, dtype, problem, K, basis, extrapolation, span, bounds, layout, seed):
    if dtype == torch.float64:
        pytest.skip("the fused kernel computes in float32")
    rows, features = problem
    lo, hi = bounds
    margin = 0.0 if span == "inside" else 0.75 * (hi - lo)
    h = make_tensor((rows, features), dtype=dtype, device=device, layout=layout, seed=seed,
                    low=lo - margin, high=hi + margin)
    beta = make_tensor((features, K), dtype=dtype, device=device, seed=seed + 1, low=-1.0, high=1.0)
    grad = make_tensor((rows, features), dtype=dtype, device=device, seed=seed + 2, low=-1.0, high=1.0)
    width = None if basis == "bspline" else [None, 0.37 * (hi - lo)][seed % 2]
    _check_fused(h, beta, grad, basis=basis, lo=lo, hi=hi, rbf_width=width, extrapolation=extrapolation)


@pytest.mark.kernel
@pytest.mark.parametrize("basis", ["bspline", "rbf"])
def test_fused_token_features_and_float32_weights_with_half_inputs(device, basis):
    h = torch.randn(2, 5, 13, device=device).to(torch.bfloat16)
    beta = torch.randn(13, 8, device=device)  # a float32 parameter under bf16 activations
    grad = torch.randn(2, 5, 13, device=device)
    _check_fused(h, beta, grad, basis=basis, extrapolation="linear")


@pytest.mark.kernel
def test_fused_broadcast_gradient_and_single_input_grads(device):
    h = torch.rand(37, 11, device=device) * 3 - 1.5
    beta = torch.randn(11, 16, device=device)
    # the additive logit Σ_j g_j sends a stride-0 (expanded) gradient back into the kernel
    for need_h, need_beta in ((True, True), (True, False), (False, True)):
        a = h.clone().requires_grad_(need_h)
        b = beta.clone().requires_grad_(need_beta)
        additive_expand(a, b, impl="triton").sum().backward()
        a_ref = h.double().requires_grad_(need_h)
        b_ref = beta.double().requires_grad_(need_beta)
        additive_expand_reference(a_ref, b_ref).sum().backward()
        if need_h:
            assert_close(a.grad, a_ref.grad, tol=_tolerance(torch.float32, a_ref.grad), name="grad h")
        if need_beta:
            assert_close(b.grad, b_ref.grad, tol=_tolerance(torch.float32, b_ref.grad), name="grad beta")


@pytest.mark.kernel
def test_fused_grad_beta_is_deterministic(device):
    h = torch.randn(300, 7, device=device)
    beta = torch.randn(7, 8, device=device, requires_grad=True)
    grads = []
    for _ in range(2):
        (gb,) = torch.autograd.grad(additive_expand(h, beta, basis="rbf", impl="triton").sum(), beta)
        grads.append(gb)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.kernel
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # the interpreter's NaN→int
def test_fused_empty_batch_and_nan_propagation(device):
    beta = torch.randn(5, 8, device=device, requires_grad=True)
    h = torch.empty(0, 5, device=device, requires_grad=True)
    g = additive_expand(h, beta, impl="triton")
    assert g.shape == (0, 5)
    g.sum().backward()
    assert beta.grad is not None and (beta.grad == 0).all()
    h = torch.tensor([[0.1, float("nan"), -0.3, 2.0, float("nan")]], device=device)
    for basis in ("bspline", "rbf"):
        out = additive_expand(h, beta.detach(), basis=basis, impl="triton")
        ref = additive_expand_reference(h, beta.detach(), basis=basis)
        assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().sum() == 2
        assert_close(out, ref, torch.float32, name=f"{basis} with NaN inputs")
