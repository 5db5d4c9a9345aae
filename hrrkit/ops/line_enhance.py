"""Line enhancement: unsharp-mask sharpening, Gaussian-derivative edge magnitude, additive fusion.

For every channel of an image batch ``x`` (B, C, H, W), independently::

    s      = x + a · (x − G_σ₁ ∗ x)                      unsharp mask (amount a)
    g_x    = D_σ₂,W ∗ (G_σ₂,H ∗ s)                       horizontal Gaussian derivative
    g_y    = D_σ₂,H ∗ (G_σ₂,W ∗ s)                       vertical Gaussian derivative
    edges  = sqrt(g_x² + g_y² + ε²) − ε                  edge magnitude (smooth at 0)
    x̃      = x + β · edges

Kernels (all 1-D, separable, radius ``r = int(truncate·σ + 0.5)``, at least 1, like scipy):

* ``G_σ[t] = exp(−t²/2σ²) / Σ_u exp(−u²/2σ²)`` for ``t = −r..r`` (sums to 1).
* ``D_σ[t] = t·exp(−t²/2σ²) / Σ_u u²·exp(−u²/2σ²)``: the Gaussian derivative normalised so that
  its response to a unit ramp ``x[i] = i`` is exactly 1 (so ``edges`` is in image units per pixel).
  Filters are applied as correlations: ``(D ∗ x)[i] = Σ_t D[t]·x[i+t]``, so g_x > 0 where the
  image brightens to the right (larger column index) and g_y > 0 where it brightens downwards.

Borders: **half-sample symmetric extension** (index folding). A sample index ``i`` outside
``[0, n)`` reads ``fold(i) = m if m < n else 2n − 1 − m`` with ``m = i mod 2n``; i.e. the image is
mirrored about its outer pixel edges (``… x1 x0 | x0 x1 … x(n−1) | x(n−1) x(n−2) …``), which is
scipy.ndimage's ``mode="reflect"`` and numpy's ``"symmetric"``. Unlike ``F.pad(mode="reflect")``
(which mirrors about the border pixel and fails when the pad reaches the size), the folding is
defined for every n ≥ 1 and every pad width: a 1-pixel image is extended as a constant, a 2-pixel
image as ``… x1 x0 x0 x1 x1 x0 …``. Because Gaussians are even, filtering the folded image and
folding the result again equals filtering the infinite symmetric extension once; the fused kernel
uses that to apply the whole linear part as composed separable filters (:func:`composed_taps`).

ε (``eps``) makes the magnitude differentiable at flat regions (its gradient there is 0) and is
subtracted so that a constant image gets exactly zero edges.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from hrrkit.ops._dispatch import (
    FusedUnavailableError,
    OpSpec,
    _env_impl,
    dispatch,
    get_op,
    register_op,
    resolve_impl,
)

#: Largest halo (r₁ + r₂, in pixels) the fused kernel handles; beyond it the reference runs.
FUSED_MAX_HALO = 48


def kernel_radius(sigma: float, truncate: float) -> int:
    """Radius (in pixels) of a Gaussian of ``sigma`` truncated at ``truncate`` standard deviations:
    ``max(1, int(truncate·σ + 0.5))`` (scipy.ndimage's rule, but never 0)."""
    return max(1, int(truncate * sigma + 0.5))


@lru_cache(maxsize=64)
def gaussian_taps(sigma: float, truncate: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(G, D)`` for offsets ``t = −r..r``: ``G[t] = e^{−t²/2σ²} / Σ e^{−u²/2σ²}`` (sums to 1) and
    ``D[t] = t·e^{−t²/2σ²} / Σ u²·e^{−u²/2σ²}`` (unit response to a unit ramp)."""
    r = kernel_radius(sigma, truncate)
    w = [math.exp(-(t * t) / (2.0 * sigma * sigma)) for t in range(-r, r + 1)]
    total = math.fsum(w)
    second = math.fsum(t * t * w[t + r] for t in range(-r, r + 1))
    return tuple(v / total for v in w), tuple(t * w[t + r] / second for t in range(-r, r + 1))


@lru_cache(maxsize=64)
def _composed_taps(sigma_sharpen: float, amount: float, sigma_edge: float, truncate: float) -> torch.Tensor:
    g1 = torch.tensor(gaussian_taps(sigma_sharpen, truncate)[0], dtype=torch.float64)
    g2, d2 = (torch.tensor(k, dtype=torch.float64) for k in gaussian_taps(sigma_edge, truncate))
    halo = (g1.numel() - 1) // 2 + (g2.numel() - 1) // 2

    def centred(kernel):  # zero taps out to radius `halo`
        r = (kernel.numel() - 1) // 2
        return F.pad(kernel, (halo - r, halo - r))

    def compose(a, b):  # correlating with a then b = correlating with their full convolution
        return torch.from_numpy(np.convolve(a.numpy(), b.numpy()))

    g12, d12 = compose(g2, g1), compose(d2, g1)
    rows = [(1 + amount) * centred(g2), -amount * g12, (1 + amount) * centred(d2), -amount * d12,
            centred(d2), d12, centred(g2), g12]
    return torch.stack(rows)


def composed_taps(sigma_sharpen: float, amount: float, sigma_edge: float, truncate: float = 3.0) -> torch.Tensor:
    """The (8, 2R + 1) float64 table of 1-D filters, R = r₁ + r₂, that the fused kernel applies:
    rows 0–3 along H — ``(1+a)·G₂``, ``−a·G₂∗G₁``, ``(1+a)·D₂``, ``−a·D₂∗G₁`` — and rows 4–7 along W
    — ``D₂``, ``D₂∗G₁``, ``G₂``, ``G₂∗G₁`` — so that
    ``g_x = W[row 4] V[row 0] x + W[row 5] V[row 1] x`` and ``g_y = W[row 6] V[row 2] x + W[row 7] V[row 3] x``
    (every filter a correlation on the half-sample symmetric extension; see the module docstring)."""
    return _composed_taps(float(sigma_sharpen), float(amount), float(sigma_edge), float(truncate)).clone()


def gaussian_kernel1d(
    sigma: float, truncate: float = 3.0, *, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """The normalised sampled Gaussian ``G_σ`` of length ``2r + 1`` (see the module docstring)."""
    return torch.tensor(gaussian_taps(float(sigma), float(truncate))[0], dtype=dtype, device=device)


def gaussian_derivative_kernel1d(
    sigma: float, truncate: float = 3.0, *, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """The ramp-normalised Gaussian derivative ``D_σ`` of length ``2r + 1``: antisymmetric,
    ``Σ_t t·D[t] = 1``."""
    return torch.tensor(gaussian_taps(float(sigma), float(truncate))[1], dtype=dtype, device=device)


def fold_indices(n: int, pad: int, device=None) -> torch.Tensor:
    """Indices ``fold(i)`` for ``i = −pad .. n + pad − 1`` (half-sample symmetric extension)."""
    if n < 1:
        raise ValueError(f"fold_indices: size must be >= 1, got {n}")
    i = torch.arange(-pad, n + pad, device=device)
    m = torch.remainder(i, 2 * n)
    return torch.where(m < n, m, 2 * n - 1 - m)


def _correlate1d(x: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """Correlate (N, 1, H, W) ``x`` with a 1-D kernel along ``dim`` (2 = H, 3 = W), folded borders."""
    r = (kernel.numel() - 1) // 2
    padded = x.index_select(dim, fold_indices(x.shape[dim], r, x.device))
    weight = kernel.view(1, 1, -1, 1) if dim == 2 else kernel.view(1, 1, 1, -1)
    return F.conv2d(padded, weight)


def gaussian_blur_reference(x: torch.Tensor, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) ``x`` with σ in pixels and the same folded (mirror)
    borders as line enhancement, so any H, W >= 1 works. Computes in float32 for half inputs and
    returns the dtype of ``x``."""
    compute = torch.promote_types(x.dtype, torch.float32)
    b, c, h, w = x.shape
    planes = x.to(compute).reshape(b * c, 1, h, w)
    g = gaussian_kernel1d(sigma, truncate, dtype=compute, device=x.device)
    return _correlate1d(_correlate1d(planes, g, 2), g, 3).reshape(b, c, h, w).to(x.dtype)


def _check_args(x, sigma_sharpen, amount, sigma_edge, beta, truncate, eps) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"line_enhance: expected an image batch (B, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise TypeError(f"line_enhance: images must be floating point, got {x.dtype}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"line_enhance: H and W must be >= 1, got {tuple(x.shape)}")
    for name, value, positive in (
        ("sigma_sharpen", sigma_sharpen, True),
        ("sigma_edge", sigma_edge, True),
        ("truncate", truncate, True),
        ("amount", amount, False),
        ("beta", beta, False),
        ("eps", eps, True),
    ):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
            need = "a positive finite number" if positive else "a finite number"
            raise ValueError(f"line_enhance: {name} must be {need}, got {value!r}")


def edge_gradients_reference(
    x: torch.Tensor, sigma_sharpen: float, amount: float, sigma_edge: float, truncate: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g_x, g_y)`` of the sharpened image, each (B, C, H, W), in float32 (float64 stays)."""
    compute = torch.promote_types(x.dtype, torch.float32)
    b, c, h, w = x.shape
    planes = x.to(compute).reshape(b * c, 1, h, w)
    g2 = gaussian_kernel1d(sigma_edge, truncate, dtype=compute, device=x.device)
    d2 = gaussian_derivative_kernel1d(sigma_edge, truncate, dtype=compute, device=x.device)
    blurred = gaussian_blur_reference(planes, sigma_sharpen, truncate)
    sharp = planes + amount * (planes - blurred)
    gx = _correlate1d(_correlate1d(sharp, g2, 2), d2, 3)
    gy = _correlate1d(_correlate1d(sharp, g2, 3), d2, 2)
    return gx.reshape(b, c, h, w), gy.reshape(b, c, h, w)


def line_enhance_reference(
    x: torch.Tensor,
    sigma_sharpen: float,
    amount: float,
    sigma_edge: float,
    beta: float,
    truncate: float = 3.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Reference implementation (the specification) with separable ``conv2d``s; see module doc.

    Args:
        x: (B, C, H, W) images, any H, W >= 1, any layout; half precision computes in float32.
        sigma_sharpen: σ₁ of the unsharp-mask blur, pixels.
        amount: unsharp amount a (0 disables sharpening).
        sigma_edge: σ₂ of the Gaussian derivative, pixels.
        beta: weight β of the edge map added back (0 returns ``x``).
        truncate: kernel radius in standard deviations.
        eps: smoothing ε of the magnitude, image units per pixel.

    Returns:
        x̃ = x + β·edges, (B, C, H, W), dtype of ``x``.
    """
    gx, gy = edge_gradients_reference(x, sigma_sharpen, amount, sigma_edge, truncate)
    edges = torch.sqrt(gx * gx + gy * gy + eps * eps) - eps
    return (x.to(edges.dtype) + beta * edges).to(x.dtype)


def fused_halo(sigma_sharpen: float, sigma_edge: float, truncate: float) -> int:
    """Halo r₁ + r₂ the fused kernel reads around each tile."""
    return kernel_radius(sigma_sharpen, truncate) + kernel_radius(sigma_edge, truncate)


def _fused_unsupported(x: torch.Tensor) -> list[str]:
    reasons = []
    if x.dim() != 4:
        reasons.append(f"expects (B, C, H, W), got rank {x.dim()}")
    elif x.shape[2] * x.shape[3] >= 2**31:
        reasons.append(f"an image plane of {x.shape[2]}×{x.shape[3]} pixels is too large for 32-bit indexing")
    return reasons


register_op(
    OpSpec(
        name="line_enhance",
        reference=line_enhance_reference,
        fused_module="hrrkit.kernels.line_enhance",
        fused_attr="line_enhance_fused",
        unsupported=_fused_unsupported,
        summary="unsharp mask → Gaussian-derivative edge magnitude → x + β·edges, two separable stencil passes, fwd+bwd",
    )
)


def line_enhance(
    x: torch.Tensor,
    sigma_sharpen: float = 1.0,
    amount: float = 1.0,
    sigma_edge: float = 1.0,
    beta: float = 0.5,
    impl: str = "auto",
    *,
    truncate: float = 3.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Line-enhanced images x̃ = x + β·|∇G_σ₂ ∗ sharpen_{σ₁,a}(x)| per channel (module docstring).

    Args:
        x: (B, C, H, W) float32/float16/bfloat16 (float64: reference only); any H, W >= 1; any
            strides (channels-last and non-contiguous included).
        sigma_sharpen: σ₁ > 0 of the unsharp mask, pixels.
        amount: a, sharpening amount (0 = no sharpening).
        sigma_edge: σ₂ > 0 of the Gaussian derivative, pixels.
        beta: β, weight of the edge magnitude (in image units per pixel) added to ``x``.
        impl: ``"auto"``, ``"reference"`` or ``"triton"`` (the fused kernel needs a halo
            r₁ + r₂ <= :data:`FUSED_MAX_HALO`; ``auto`` runs the reference beyond it).
        truncate: kernel radius in standard deviations (r = int(truncate·σ + 0.5), >= 1).
        eps: ε > 0 smoothing the magnitude at zero gradient.

    Returns:
        (B, C, H, W) in the dtype of ``x``; differentiable w.r.t. ``x``.
    """
    _check_args(x, sigma_sharpen, amount, sigma_edge, beta, truncate, eps)
    args = (float(sigma_sharpen), float(amount), float(sigma_edge), float(beta), float(truncate), float(eps))
    halo = fused_halo(sigma_sharpen, sigma_edge, truncate)
    if halo > FUSED_MAX_HALO and resolve_impl("line_enhance", impl, (x,)) == "triton":
        # the fused path was chosen but cannot take this halo: an explicit request (argument or
        # environment) is an error, "auto" quietly runs the reference
        if impl == "triton" or _env_impl("line_enhance") == "triton":
            raise FusedUnavailableError("line_enhance", [f"halo r1 + r2 = {halo} > {FUSED_MAX_HALO} pixels"])
        return line_enhance_reference(x, *args)
    fn = dispatch("line_enhance", impl, (x,))
    if fn is get_op("line_enhance").reference:
        return fn(x, *args)
    return fn(x, composed_taps(sigma_sharpen, amount, sigma_edge, truncate), args[3], args[5])
