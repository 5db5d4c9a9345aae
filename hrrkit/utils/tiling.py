"""Tile geometry shared by the data pipeline and the layers: where the tiles covering a length start."""

from __future__ import annotations


def tile_starts(length: int, tile: int) -> list[int]:
    """Starts of the ⌈length / tile⌉ evenly spaced tiles of side ``tile`` covering ``[0, length)``.

    The first tile starts at 0 and the last one ends flush with the far edge; neighbours overlap
    by as little as that allows, and the gaps between starts differ by at most one pixel (start i
    is i·(length − tile)/(n − 1) rounded half up, in integer arithmetic). ``length <= tile`` gives
    one tile at 0 (the caller pads or floors the image to at least ``tile``).

    Example: ``tile_starts(8, 3) == [0, 3, 5]``.
    """
    if tile < 1 or length < 0:
        raise ValueError(f"tile_starts: need tile >= 1 and length >= 0, got length={length}, tile={tile}")
    n = max(1, -(-length // tile))
    if n == 1:
        return [0]
    return [(i * (length - tile) + (n - 1) // 2) // (n - 1) for i in range(n)]
