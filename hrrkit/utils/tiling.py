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


def map_spatial_tiles(fn, x, core: int, reach: int, stride: int):
    """``fn(x)`` for a translation-equivariant feature extractor ``fn`` computed in overlapping tiles,
    so one call sees about ``(core + 2·reach)²`` pixels instead of the whole image.

    ``fn`` maps ``(N, C, H, W)`` to ``(N, C_f, ⌈H/stride⌉, ⌈W/stride⌉)``; its downsampling is a chain of
    stride-2 layers with TensorFlow "same" padding (output ⌈n/2⌉), and every output location depends
    only on inputs within ``reach`` pixels of it. The output is cut into cores of ``core`` input pixels
    (a multiple of ``stride``); the tile of a core adds ``reach`` pixels on each side (rounded up to
    ``stride``), starts on a multiple of ``stride`` and has a length congruent to the image's modulo
    ``stride``, so every layer pads and samples the tile on the same lattice as the whole image and
    each core's output equals the whole image's output (up to float rounding). Returns that output.
    """
    import torch

    if core < stride or core % stride or stride < 1:
        raise ValueError(f"map_spatial_tiles: core {core} must be a positive multiple of stride {stride}")
    halo = -(-reach // stride) * stride
    h, w = x.shape[-2:]

    def spans(length: int) -> list[tuple[int, int, int, int]]:
        """(tile start, tile end, core start, core end) along one axis, in input pixels."""
        rest = length % stride
        out = []
        for c0 in range(0, length, core):
            c1 = min(length, c0 + core)
            t0 = max(0, c0 - halo)
            t1 = length if c1 + halo + rest >= length else c1 + halo + rest
            out.append((t0, t1, c0, c1))
        return out

    out_h, out_w = -(-h // stride), -(-w // stride)
    rows, cols = spans(h), spans(w)
    if len(rows) == 1 and len(cols) == 1:
        return fn(x)
    result = None
    for t0, t1, c0, c1 in rows:
        for u0, u1, d0, d1 in cols:
            part = fn(x[..., t0:t1, u0:u1])
            r0, r1 = c0 // stride, min(out_h, -(-c1 // stride))
            q0, q1 = d0 // stride, min(out_w, -(-d1 // stride))
            if result is None:
                result = part.new_empty(*part.shape[:-2], out_h, out_w)
            result[..., r0:r1, q0:q1] = part[..., r0 - t0 // stride : r1 - t0 // stride,
                                             q0 - u0 // stride : q1 - u0 // stride]
    return result if result is not None else torch.empty(0)
