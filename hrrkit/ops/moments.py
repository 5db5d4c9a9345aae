"""Multi-level (spatial-pyramid) moments of feature maps: per-channel mean and variance per grid cell.

For a map x (B, C, H, W) and grid levels ``(n₁, n₂, …)`` (default ``(1, 2, 4)``), level n splits
the map into n × n cells. **Cell boundaries** follow adaptive pooling (``F.adaptive_avg_pool2d``):
cell i of n along a side of length L covers ``[floor(i·L/n), ceil((i+1)·L/n))``. Every cell is
non-empty for every L >= 1 (cells overlap by one row/column when n does not divide L, and
repeat the same pixels when L < n); cells of uneven size are handled exactly — each cell's moments
are those of exactly its pixels.

Cells are ordered level by level, row-major inside a level: with ``(1, 2, 4)`` the K = 1 + 4 + 16
= 21 cells are ``[whole, (0,0), (0,1), (1,0), (1,1), (0,0), …, (3,3)]`` (see :func:`cell_boxes`).
Variances are population variances (divide by the cell's pixel count; a 1-pixel cell has 0).

The residual variant computes the same moments of ``|a − b|`` (the reconstruction residual)
without materialising it on the fused path.

Outputs are in float32 for float32/float16/bfloat16 inputs and float64 for float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hrrkit.kernels._grid import cell_bounds, cell_boxes
from hrrkit.ops._dispatch import OpSpec, dispatch, register_op

DEFAULT_LEVELS: tuple[int, ...] = (1, 2, 4)

__all__ = [
    "DEFAULT_LEVELS",
    "cell_bounds",
    "cell_boxes",
    "check_levels",
    "multilevel_moments",
    "multilevel_moments_reference",
    "num_cells",
    "residual_multilevel_moments",
    "residual_multilevel_moments_reference",
]


def num_cells(levels: Sequence[int]) -> int:
    """K = Σ n² over the levels."""
    return sum(n * n for n in levels)


def check_levels(levels: Sequence[int], where: str = "moments") -> tuple[int, ...]:
    levels = tuple(levels)
    if not levels or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in levels):
        raise ValueError(f"{where}: levels must be a non-empty sequence of positive ints, got {levels!r}")
    return levels


def _check_map(x: torch.Tensor, where: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{where}: expected a feature map (B, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise TypeError(f"{where}: expected a floating-point map, got {x.dtype}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{where}: H and W must be >= 1, got {tuple(x.shape)}")


def multilevel_moments_reference(
    x: torch.Tensor, levels: tuple[int, ...] = DEFAULT_LEVELS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference (the specification): two-pass ``torch.var_mean`` per cell.

    Args:
        x: (B, C, H, W), any floating dtype and layout.
        levels: grid levels.

    Returns:
        ``(mean, var)``, each (B, C, K), float32 (float64 for float64 input).
    """
    compute = torch.promote_types(x.dtype, torch.float32)
    xc = x.to(compute)
    means, variances = [], []
    for top, bottom, left, right in cell_boxes(x.shape[2], x.shape[3], tuple(levels)):
        var, mean = torch.var_mean(xc[:, :, top:bottom, left:right], dim=(2, 3), correction=0)
        means.append(mean)
        variances.append(var)
    return torch.stack(means, dim=-1), torch.stack(variances, dim=-1)


def residual_multilevel_moments_reference(
    a: torch.Tensor, b: torch.Tensor, levels: tuple[int, ...] = DEFAULT_LEVELS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the moments of ``|a − b|`` (materialised). Same contract as above; the gradient
    of |·| at a = b is 0."""
    compute = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return multilevel_moments_reference((a.to(compute) - b.to(compute)).abs(), levels)


def _unsupported(*tensors: torch.Tensor) -> list[str]:
    reasons = []
    if any(t.dim() != 4 for t in tensors):
        reasons.append("expects (B, C, H, W) maps")
    elif len(tensors) == 2 and tensors[0].shape != tensors[1].shape:
        reasons.append(f"a {tuple(tensors[0].shape)} and b {tuple(tensors[1].shape)} differ in shape")
    elif any(t.numel() >= 2**31 or max(t.stride()) * max(t.shape) >= 2**31 for t in tensors):
        reasons.append("tensor too large for 32-bit indexing")
    return reasons


register_op(
    OpSpec(
        name="multilevel_moments",
        reference=multilevel_moments_reference,
        fused_module="hrrkit.kernels.multilevel_moments",
        fused_attr="multilevel_moments_fused",
        unsupported=_unsupported,
        summary="per-channel mean/variance over grid levels (1, 2, 4), one pass, fwd+bwd",
    )
)
register_op(
    OpSpec(
        name="residual_moments",
        reference=residual_multilevel_moments_reference,
        fused_module="hrrkit.kernels.multilevel_moments",
        fused_attr="residual_multilevel_moments_fused",
        unsupported=_unsupported,
        summary="multi-level moments of |a − b| without materialising it, fwd+bwd",
    )
)


def multilevel_moments(
    x: torch.Tensor, levels: Sequence[int] = DEFAULT_LEVELS, impl: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population variance of ``x`` over the cells of each grid level.

    Args:
        x: (B, C, H, W) float32/float16/bfloat16 (float64: reference only); any H, W >= 1, any
            layout (channels-last included).
        levels: grid levels n (n × n cells each); cell boundaries as in the module docstring.
        impl: ``"auto"``, ``"reference"`` or ``"triton"``.

    Returns:
        ``(mean, var)``, each (B, C, K) with K = Σ n², float32 (float64 for float64 input),
        cells in :func:`cell_boxes` order. Differentiable w.r.t. ``x``.
    """
    _check_map(x, "multilevel_moments")
    levels = check_levels(levels, "multilevel_moments")
    return dispatch("multilevel_moments", impl, (x,))(x, levels)


def residual_multilevel_moments(
    a: torch.Tensor, b: torch.Tensor, levels: Sequence[int] = DEFAULT_LEVELS, impl: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-level moments of the residual ``|a − b|``; the fused path never materialises it.

    Args:
        a, b: (B, C, H, W), same shape (any layouts, may differ), e.g. image and reconstruction.
        levels, impl: as in :func:`multilevel_moments`.

    Returns:
        ``(mean, var)`` of |a − b|, each (B, C, K). Differentiable w.r.t. ``a`` and ``b``.
    """
    _check_map(a, "residual_multilevel_moments")
    _check_map(b, "residual_multilevel_moments")
    if a.shape != b.shape:
        raise ValueError(
            f"residual_multilevel_moments: a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape"
        )
    levels = check_levels(levels, "residual_multilevel_moments")
    return dispatch("residual_moments", impl, (a, b))(a, b, levels)
