"""Grid-cell geometry of the multi-level moments, shared by the reference op and the fused kernel
(pure Python: importing this module does not import Triton)."""

from __future__ import annotations

from functools import lru_cache


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
