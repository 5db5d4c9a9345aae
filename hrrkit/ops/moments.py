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
from functools import lru_cache

import numpy as np
import torch

from hrrkit.ops._dispatch import OpSpec, dispatch, get_op, register_op

DEFAULT_LEVELS: tuple[int, ...] = (1, 2, 4)

__all__ = [
    "DEFAULT_LEVELS",
    "atom_geometry",
    "cell_bounds",
    "cell_boxes",
    "check_levels",
    "multilevel_moments",
    "multilevel_moments_reference",
    "num_cells",
    "residual_multilevel_moments",
    "residual_multilevel_moments_reference",
]


def cell_bounds(length: int, n: int) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` of the n cells along a side of ``length``: adaptive-pooling rule
    ``start = floor(i·L/n)``, ``stop = ceil((i+1)·L/n)`` (never empty for L >= 1)."""
    return [((i * length) // n, -((-(i + 1) * length) // n)) for i in range(n)]


@lru_cache(maxsize=256)
def cell_boxes(height: int, width: int, levels: tuple[int, ...]) -> tuple[tuple[int, int, int, int], ...]:
    """The K = Σ n² cells as ``(top, bottom, left, right)`` half-open boxes, level by level,
    row-major inside a level."""
    boxes = []
    for n in levels:
        rows, cols = cell_bounds(height, n), cell_bounds(width, n)
        boxes += [(r0, r1, c0, c1) for (r0, r1) in rows for (c0, c1) in cols]
    return tuple(boxes)


@lru_cache(maxsize=128)
def atom_geometry(height: int, width: int, levels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The atoms the fused kernel reduces: the rectangles between consecutive distinct cell
    boundaries of all levels (they partition the map; every cell is a union of atoms).

    Returns ``(atoms, counts, member)``: (A, 4) int32 rows (top, height, left, width), the (A,)
    float64 pixel counts, and the (A, K) float64 0/1 atom-in-cell matrix (cells in
    :func:`cell_boxes` order)."""

    def cuts(length):
        bounds = {0, length}
        for n in levels:
            for start, stop in cell_bounds(length, n):
                bounds.update((start, stop))
        return sorted(bounds)

    rows, cols = cuts(height), cuts(width)
    atoms = [(r0, r1 - r0, c0, c1 - c0) for r0, r1 in zip(rows, rows[1:]) for c0, c1 in zip(cols, cols[1:])]
    geo = np.array(atoms, dtype=np.int32)
    boxes = cell_boxes(height, width, levels)
    member = np.zeros((len(atoms), len(boxes)), dtype=np.float64)
    for k, (top, bottom, left, right) in enumerate(boxes):
        for i, (r0, rl, c0, cl) in enumerate(atoms):
            member[i, k] = float(top <= r0 and r0 + rl <= bottom and left <= c0 and c0 + cl <= right)
    counts = (geo[:, 1] * geo[:, 3]).astype(np.float64)
    return geo, counts, member


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
    """Reference (the specification): ``torch.mean`` and ``torch.var`` per cell.

    Non-finite values stay in their cells: a cell holding +inf (and no NaN or −inf) has mean +inf
    (−inf likewise; NaN when it holds NaN or both signs) and variance NaN; every other cell is
    unaffected.

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
        cell = xc[:, :, top:bottom, left:right]
        # torch.mean, not var_mean's running mean: the latter turns a +inf into NaN unless it comes last
        mean = cell.mean(dim=(2, 3))
        var = torch.var(cell, dim=(2, 3), correction=0)
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
    elif any(_item_offset(t) >= 2**31 for t in tensors):
        reasons.append("one batch item spans 2^31 or more elements (the kernel's in-item offsets are int32)")
    return reasons


def _item_offset(t: torch.Tensor) -> int:
    # the largest offset the kernel forms in int32: (C−1)|s_c| + (H−1)|s_h| + (W−1)|s_w|, and the
    # contiguous gradient it may write (C·H·W)
    strided = sum((n - 1) * abs(s) for n, s in zip(t.shape[1:], t.stride()[1:]))
    return max(strided, t.shape[1] * t.shape[2] * t.shape[3])


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
    fn = dispatch("multilevel_moments", impl, (x,))
    if fn is get_op("multilevel_moments").reference:
        return fn(x, levels)
    return fn(x, atom_geometry(x.shape[2], x.shape[3], levels))


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
    fn = dispatch("residual_moments", impl, (a, b))
    if fn is get_op("residual_moments").reference:
        return fn(a, b, levels)
    return fn(a, b, atom_geometry(a.shape[2], a.shape[3], levels))
