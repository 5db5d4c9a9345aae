"""Additive basis expansion, the core op of Additive Feature Refinement (AFR).

For features ``h`` of shape ``(..., D)`` and coefficients ``beta`` of shape ``(D, K)``::

    g[..., j] = Σ_k beta[j, k] · φ_k(h[..., j])

so every feature dimension j gets its own one-dimensional shape function g_j, a combination of
K fixed basis functions φ_k on the normalised range ``[lo, hi]``.

Bases
-----
``"bspline"`` — uniform cubic B-splines (K ≥ 4). The knot spacing is ``Δ = (hi − lo) / (K − 3)``
and the K + 4 knots are ``t_i = lo + (i − 3)·Δ`` for ``i = 0 … K + 3``: K − 3 intervals cover
``[lo, hi]`` and three knots on each side extend the grid uniformly. Basis k is the cardinal cubic
B-spline on the knots ``t_k … t_{k+4}`` (support ``[lo + (k − 3)Δ, lo + (k + 1)Δ]``, peak 2/3 at
``lo + (k − 1)Δ``). On ``[lo, hi]`` the K functions sum to one and reproduce straight lines; at
most four are non-zero at any point. This is scipy's ``BSpline.design_matrix(x, t, 3)`` with the
knot vector ``t`` above (the tests check it).

``"rbf"`` — Gaussian radial basis functions (K ≥ 2) with centres ``c_k = lo + k·(hi − lo)/(K − 1)``
(``c_0 = lo``, ``c_{K−1} = hi``) and ``φ_k(x) = exp(−(x − c_k)² / (2 w²))``; the width ``w``
defaults to the centre spacing ``(hi − lo) / (K − 1)``.

Outside the range
-----------------
Both bases are defined on ``[lo, hi]``; an input outside is handled by ``extrapolation``:

* ``"clamp"`` (default): ``g_j(x) = g_j(clamp(x, lo, hi))`` — constant beyond the range, so the
  gradient with respect to h is zero there (at ``lo`` and ``hi`` themselves it is the one-sided
  slope, as ``torch.clamp`` gives).
* ``"linear"``: ``g_j(x) = g_j(b) + g_j'(b)·(x − b)`` with ``b`` the nearer end of the range —
  the tangent line at the boundary, so the gradient stays ``g_j'(b)``.

Non-finite values
-----------------
A NaN or inf coefficient ``beta[j, k]`` makes feature j's output NaN for every input (and its
gradient with respect to h, where h receives one): the sum over all K terms multiplies it by basis
values that are zero. The fused B-spline kernel, which reads only the four non-zero terms, adds
``Σ_k 0·beta[j, k]`` to reproduce that — a broken parameter is never hidden. A NaN in ``h`` gives
NaN in its own output element only.

Implementations
---------------
:func:`additive_expand_reference` builds the ``(..., D, K)`` basis tensor (the specification);
the fused Triton kernels in :mod:`hrrkit.kernels.additive_expand` never materialise it.
"""

from __future__ import annotations

import math

import torch

from hrrkit.ops._dispatch import OpSpec, dispatch, register_op

BASES = ("bspline", "rbf")
EXTRAPOLATIONS = ("clamp", "linear")
#: Largest K the fused kernel accepts (it keeps a (rows × D-block × K) tile in registers).
FUSED_MAX_BASIS = 64


def _min_basis(basis: str) -> int:
    return 4 if basis == "bspline" else 2


def check_basis_args(
    num_basis: int, basis: str, lo: float, hi: float, rbf_width: float | None, extrapolation: str
) -> None:
    """Validate the basis description shared by the op and the modules; raise a clear error."""
    if basis not in BASES:
        raise ValueError(f"additive_expand: basis={basis!r}, expected one of {BASES}")
    if extrapolation not in EXTRAPOLATIONS:
        raise ValueError(f"additive_expand: extrapolation={extrapolation!r}, expected one of {EXTRAPOLATIONS}")
    if not isinstance(num_basis, int) or num_basis < _min_basis(basis):
        raise ValueError(
            f"additive_expand: basis {basis!r} needs K >= {_min_basis(basis)} basis functions, got K={num_basis}"
        )
    for name, v in (("lo", lo), ("hi", hi)):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"additive_expand: {name} must be a finite number, got {v!r}")
    if not lo < hi:
        raise ValueError(f"additive_expand: need lo < hi, got lo={lo}, hi={hi}")
    if rbf_width is not None:
        if basis != "rbf":
            raise ValueError("additive_expand: rbf_width is only meaningful with basis='rbf'")
        if not isinstance(rbf_width, (int, float)) or not math.isfinite(rbf_width) or rbf_width <= 0:
            raise ValueError(f"additive_expand: rbf_width must be a positive finite number, got {rbf_width!r}")


def bspline_knots(num_basis: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """The K + 4 uniform knots ``t_i = lo + (i − 3)·(hi − lo)/(K − 3)`` (float64), as scipy wants them."""
    step = (hi - lo) / (num_basis - 3)
    return lo + (torch.arange(num_basis + 4, dtype=torch.float64) - 3) * step


def rbf_centres(num_basis: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """The K centres ``lo + k·(hi − lo)/(K − 1)`` (float64)."""
    return lo + torch.arange(num_basis, dtype=torch.float64) * ((hi - lo) / (num_basis - 1))


def default_rbf_width(num_basis: int, lo: float, hi: float) -> float:
    """The default Gaussian width: the spacing of the centres."""
    return (hi - lo) / (num_basis - 1)


def _cardinal_cubic(u: torch.Tensor, with_slope: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cardinal cubic B-spline N(u) on [0, 4) and, if asked, its derivative dN/du (zero elsewhere).

    Written through the distance to the centre, a = |u − 2|: N = (2 − a)₊³/6 − 4(1 − a)₊³/6 (the four
    cubic pieces in one expression, exactly), dN/du = sign(u − 2)·(−(2 − a)₊²/2 + 2(1 − a)₊²). A handful of
    elementwise ops on the (..., D, K) tensor instead of four masked pieces: the CPU reference runs several
    times faster, and NaN stays NaN (clamp and abs keep it).
    """
    centred = u - 2.0
    a = centred.abs()
    outer = (2.0 - a).clamp_min(0.0)
    inner = (1.0 - a).clamp_min(0.0)
    outer2, inner2 = outer * outer, inner * inner
    # + 0·u: outside the support the clamps pass no gradient, yet a non-finite coefficient must still poison
    # its feature's gradient everywhere (0·NaN = NaN), as the fused kernel's (and the piecewise form's) does
    value = (outer2 * outer - 4.0 * (inner2 * inner)) / 6.0 + 0.0 * u
    if not with_slope:
        return value, None
    slope = torch.sign(centred) * (2.0 * inner2 - 0.5 * outer2)
    return value, slope


def _basis_and_slope(
    x: torch.Tensor, num_basis: int, basis: str, lo: float, hi: float, rbf_width: float | None, with_slope: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """φ_k(x) and (if ``with_slope``) φ_k'(x) for x inside [lo, hi]; shape (*x.shape, K)."""
    k = torch.arange(num_basis, device=x.device, dtype=x.dtype)
    if basis == "bspline":
        step = (hi - lo) / (num_basis - 3)
        # position of x relative to knot t_k = lo + (k − 3)Δ, in units of Δ
        u = (x.unsqueeze(-1) - lo) / step - (k - 3)
        value, slope = _cardinal_cubic(u, with_slope)
        return value, (slope / step if with_slope else None)
    width = default_rbf_width(num_basis, lo, hi) if rbf_width is None else float(rbf_width)
    centres = lo + k * ((hi - lo) / (num_basis - 1))
    d = x.unsqueeze(-1) - centres
    value = torch.exp(-(d * d) / (2 * width * width))
    return value, (-d / (width * width) * value if with_slope else None)


def additive_basis(
    x: torch.Tensor,
    num_basis: int,
    *,
    basis: str = "bspline",
    lo: float = -1.0,
    hi: float = 1.0,
    rbf_width: float | None = None,
    extrapolation: str = "clamp",
) -> torch.Tensor:
    """The basis functions evaluated at ``x``, with the out-of-range rule applied.

    Args:
        x: any shape, floating point (half precision is computed in float32).
        num_basis: K.
        basis, lo, hi, rbf_width, extrapolation: see :mod:`hrrkit.ops.additive`.

    Returns:
        ``(*x.shape, K)`` in the compute dtype (float32 or float64).
    """
    check_basis_args(num_basis, basis, lo, hi, rbf_width, extrapolation)
    if not x.is_floating_point():
        raise TypeError(f"additive_basis: x must be floating point, got {x.dtype}")
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    xc = x.clamp(lo, hi)
    linear = extrapolation == "linear"
    value, slope = _basis_and_slope(xc, num_basis, basis, lo, hi, rbf_width, with_slope=linear)
    if linear:
        value = value + slope * (x - xc).unsqueeze(-1)
    return value


def additive_expand_reference(
    h: torch.Tensor,
    beta: torch.Tensor,
    *,
    basis: str = "bspline",
    lo: float = -1.0,
    hi: float = 1.0,
    rbf_width: float | None = None,
    extrapolation: str = "clamp",
) -> torch.Tensor:
    """Reference implementation (the specification): materialises the (..., D, K) basis tensor.

    Args:
        h: features ``(..., D)``, floating point.
        beta: coefficients ``(D, K)``.
        basis, lo, hi, rbf_width, extrapolation: see :mod:`hrrkit.ops.additive`.

    Returns:
        ``g`` of shape ``h.shape`` and dtype ``promote_types(h.dtype, beta.dtype)``, computed in
        at least float32. Differentiable with respect to ``h`` and ``beta``.
    """
    out_dtype = torch.promote_types(h.dtype, beta.dtype)
    compute = torch.promote_types(out_dtype, torch.float32)
    phi = additive_basis(
        h.to(compute), beta.shape[-1], basis=basis, lo=lo, hi=hi, rbf_width=rbf_width, extrapolation=extrapolation
    )
    g = (phi * beta.to(compute)).sum(-1)
    return g.to(out_dtype)


def _fused_unsupported(h: torch.Tensor, beta: torch.Tensor) -> list[str]:
    reasons = []
    if h.numel() >= 2**31:
        reasons.append("h has 2^31 or more elements (the kernel indexes with int32)")
    if beta.shape[-1] > FUSED_MAX_BASIS:
        reasons.append(f"K={beta.shape[-1]} basis functions; the fused kernel supports K <= {FUSED_MAX_BASIS}")
    return reasons


register_op(
    OpSpec(
        name="additive_expand",
        reference=additive_expand_reference,
        fused_module="hrrkit.kernels.additive_expand",
        fused_attr="additive_expand_fused",
        unsupported=_fused_unsupported,
        summary="AFR basis expansion g[..., j] = Σ_k β[j,k] φ_k(h[..., j]) (B-spline/RBF), fwd+bwd",
    )
)


def additive_expand(
    h: torch.Tensor,
    beta: torch.Tensor,
    *,
    basis: str = "bspline",
    lo: float = -1.0,
    hi: float = 1.0,
    rbf_width: float | None = None,
    extrapolation: str = "clamp",
    impl: str = "auto",
) -> torch.Tensor:
    """Per-dimension shape functions ``g[..., j] = Σ_k beta[j, k] · φ_k(h[..., j])``.

    Args:
        h: features ``(..., D)`` — e.g. pooled ``(B, D)`` or token ``(B, N, D)`` — float32, float16
            or bfloat16 (the fused kernel accumulates in float32; float64 runs the reference).
            Values are expected in ``[lo, hi]``; see ``extrapolation`` for the rest.
        beta: coefficients ``(D, K)``.
        basis: ``"bspline"`` (uniform cubic, K ≥ 4) or ``"rbf"`` (Gaussian, K ≥ 2).
        lo, hi: the basis range, ``lo < hi``.
        rbf_width: Gaussian width w (units of h) for ``basis="rbf"``; default the centre spacing.
        extrapolation: ``"clamp"`` or ``"linear"`` (tangent at the boundary).
        impl: ``"auto"``, ``"reference"`` or ``"triton"`` (see :mod:`hrrkit.ops._dispatch`).

    Returns:
        ``g`` shaped like ``h``, dtype ``promote_types(h.dtype, beta.dtype)``.
    """
    if not isinstance(h, torch.Tensor) or not isinstance(beta, torch.Tensor):
        raise TypeError("additive_expand: h and beta must be tensors")
    if not h.is_floating_point() or not beta.is_floating_point():
        raise TypeError(f"additive_expand: h and beta must be floating point, got {h.dtype} and {beta.dtype}")
    if h.dim() < 1:
        raise ValueError("additive_expand: h must have at least one dimension (..., D)")
    if beta.dim() != 2:
        raise ValueError(f"additive_expand: beta must have shape (D, K), got {tuple(beta.shape)}")
    if h.shape[-1] != beta.shape[0]:
        raise ValueError(
            f"additive_expand: h has D={h.shape[-1]} features in its last dimension but beta has "
            f"{beta.shape[0]} rows (beta must be (D, K))"
        )
    check_basis_args(beta.shape[1], basis, lo, hi, rbf_width, extrapolation)
    fn = dispatch("additive_expand", impl, (h, beta))
    return fn(
        h,
        beta,
        basis=basis,
        lo=float(lo),
        hi=float(hi),
        rbf_width=None if rbf_width is None else float(rbf_width),
        extrapolation=extrapolation,
    )
