"""Tile geometry shared by the data pipeline and the layers: where the tiles covering a length start,
and how much of an image one network call may take."""

from __future__ import annotations

#: Most pixels one network call of the retrospector or the backbone takes during inference (512 x 512).
#: Larger batches go in groups under it and a larger image is tiled (the retrospector) or taken alone
#: (the backbone), which keeps the activations of one call near 150 MB for the shipped retrospector
#: (about 500 bytes per pixel on CPU, measured with benchmarks/detect_memory.py).
DEFAULT_CALL_PIXELS = 1 << 18


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


def map_row_strips(fn, x, halo: int, max_pixels: int):
    """``fn(x)`` for a local image operator ``fn`` of vertical reach ``halo`` rows, computed in
    horizontal strips of about ``max_pixels`` pixels per plane, each with ``halo`` extra rows on both
    sides, so its temporaries are bounded by the strip instead of the image.

    ``x`` is ``(..., H, W)`` (a torch tensor); ``fn`` must map ``(..., h, W)`` to the same shape and
    treat only the first and last rows of its input as borders. Every output row then sees the same
    neighbours as in one pass, and the result equals ``fn(x)`` (bit for bit for convolutions whose taps
    do not depend on the size). Images of at most ``max_pixels`` pixels call ``fn(x)`` once.
    """
    import torch

    h, w = x.shape[-2:]
    if h * w <= max_pixels or h < 2:
        return fn(x)
    rows = max(1, max_pixels // w)
    out = []
    for top in range(0, h, rows):
        bottom = min(h, top + rows)
        lo, hi = max(0, top - halo), min(h, bottom + halo)
        out.append(fn(x[..., lo:hi, :])[..., top - lo : top - lo + bottom - top, :])
    return torch.cat(out, dim=-2)
