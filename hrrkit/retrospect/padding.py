"""Any image size for a fixed-stride network: reflection padding to a multiple, and overlapping tiles.

Diffusion UNets and VAEs only accept sizes divisible by their total down-sampling factor, and a
model trained at 256 or 512 px behaves best on inputs near that size. hrrkit never resizes for the
model (a resize would add the very interpolation traces a detector latches onto); it pads by
reflection to the next multiple, optionally cuts the padded image into overlapping tiles, and
crops the result back to the input size.

Padding goes to the bottom and right only, so a result that lives on a coarser grid (a latent at
1/f of the image size) is cropped back with a plain ``[:ceil(H/f), :ceil(W/f)]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class PadInfo:
    """How an image was padded: its original size and the padded size (pixels)."""

    height: int
    width: int
    padded_height: int
    padded_width: int


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The smallest ``(H', W')`` ≥ ``(height, width)`` with both divisible by ``multiple``."""
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


def _reflect_extend(x: Tensor, extra: int, dim: int) -> Tensor:
    """Append ``extra`` reflected rows/columns at the end of ``dim``.

    ``F.pad(mode="reflect")`` needs the pad to be smaller than the size; for a tiny image padded to a
    large multiple the reflection is repeated (mirror of the mirror), which is what a periodic
    symmetric extension gives.
    """
    while extra > 0:
        size = x.shape[dim]
        if size == 1:  # nothing to reflect: replicate the single row/column
            reps = [1] * x.dim()
            reps[dim] = extra + 1
            return x.repeat(*reps)
        step = min(extra, size - 1)
        # F.pad order is (left, right, top, bottom): pad only the right or the bottom
        pad = [0, step, 0, 0] if dim == -1 else [0, 0, 0, step]
        x = F.pad(x, pad, mode="reflect")
        extra -= step
    return x


def pad_to_multiple(images: Tensor, multiple: int) -> tuple[Tensor, PadInfo]:
    """Reflection-pad a batch ``(B, C, H, W)`` at the bottom/right to a multiple of ``multiple``.

    Returns the padded batch ``(B, C, H', W')`` and the :class:`PadInfo` that :func:`crop_to`
    needs. Works for any ``H, W ≥ 1``, also when the pad exceeds the image size.
    """
    if images.dim() != 4:
        raise ValueError(f"expected an image batch (B, C, H, W), got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    ph, pw = padded_size(height, width, multiple)
    out = images
    # reflect padding is not implemented for every integer/half dtype on every device: pad in float32
    work_dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    if (ph, pw) != (height, width):
        out = out.to(work_dtype)
        out = _reflect_extend(out, ph - height, dim=-2)
        out = _reflect_extend(out, pw - width, dim=-1)
        out = out.to(images.dtype)
    return out, PadInfo(height, width, ph, pw)


def crop_to(tensor: Tensor, info: PadInfo, factor: int = 1) -> Tensor:
    """Crop a padded result back to the original size.

    ``factor`` is the down-sampling of ``tensor`` relative to the image (1 for images, the VAE
    factor for latents); the crop keeps ``ceil(H / factor) × ceil(W / factor)``.
    """
    if tensor.shape[-2] * factor != info.padded_height or tensor.shape[-1] * factor != info.padded_width:
        raise ValueError(
            f"tensor of spatial size {tuple(tensor.shape[-2:])} at factor {factor} does not match the "
            f"padded size {(info.padded_height, info.padded_width)}"
        )
    return tensor[..., : math.ceil(info.height / factor), : math.ceil(info.width / factor)]


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap``.

    The last tile is aligned to the end. Starts are multiples of ``align`` (so tiles of a padded
    image map onto whole latent cells); ``length`` and ``tile`` must be multiples of ``align``.
    """
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile) = [0, {tile}), got {overlap}")
    stride = max(align, ((tile - overlap) // align) * align)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(size: int, overlap: int, device: torch.device) -> Tensor:
    """1-D blending weight: rises linearly over ``overlap`` at both ends, 1 in the middle, never 0."""
    idx = torch.arange(size, device=device, dtype=torch.float32)
    edge = torch.minimum(idx + 1, size - idx)
    return torch.clamp(edge / (overlap + 1), max=1.0)


@dataclass(frozen=True)
class TileGrid:
    """Tile layout over a padded image: tile size and start offsets along each axis (pixels)."""

    tile_h: int
    tile_w: int
    starts_h: tuple[int, ...]
    starts_w: tuple[int, ...]
    overlap: int

    @property
    def count(self) -> int:
        return len(self.starts_h) * len(self.starts_w)

    def boxes(self) -> Iterator[tuple[int, int]]:
        for y in self.starts_h:
            for x in self.starts_w:
                yield y, x


def make_tile_grid(height: int, width: int, tile: int | None, overlap: int, align: int) -> TileGrid:
    """Tiles of at most ``tile`` px (rounded down to ``align``) over a padded ``height × width``.

    ``tile=None`` means a single tile covering the whole image.
    """
    if tile is None:
        return TileGrid(height, width, (0,), (0,), 0)
    tile = (tile // align) * align
    if tile < align:
        raise ValueError(f"tile size must be at least the model's size multiple {align}")
    th, tw = min(tile, height), min(tile, width)
    overlap = min(overlap, max(th, tw) - 1)
    return TileGrid(
        th,
        tw,
        tuple(tile_starts(height, th, min(overlap, th - 1), align)),
        tuple(tile_starts(width, tw, min(overlap, tw - 1), align)),
        overlap,
    )


def extract_tiles(images: Tensor, grid: TileGrid) -> Tensor:
    """``(B, C, H, W)`` → ``(B·T, C, th, tw)``, tile-major within each image."""
    tiles = [images[..., y : y + grid.tile_h, x : x + grid.tile_w] for y, x in grid.boxes()]
    return torch.stack(tiles, dim=1).flatten(0, 1)


def blend_tiles(tiles: Tensor, grid: TileGrid, batch: int, height: int, width: int, factor: int = 1) -> Tensor:
    """Inverse of :func:`extract_tiles` with linear cross-fades in the overlaps.

    ``tiles`` is ``(B·T, C, th/factor, tw/factor)``; the result is ``(B, C, H/factor, W/factor)``,
    a weighted mean of every tile that covers a position (weights ramp over the overlap so seams
    fade instead of jumping). Accumulates in float32.
    """
    if grid.count == 1:
        return tiles.reshape(batch, *tiles.shape[1:])
    th, tw = grid.tile_h // factor, grid.tile_w // factor
    overlap = max(grid.overlap // factor, 0)
    channels = tiles.shape[1]
    tiles = tiles.reshape(batch, grid.count, channels, th, tw).float()
    w2d = _ramp(th, overlap, tiles.device)[:, None] * _ramp(tw, overlap, tiles.device)[None, :]
    acc = tiles.new_zeros(batch, channels, height // factor, width // factor)
    weight = tiles.new_zeros(1, 1, height // factor, width // factor)
    for i, (y, x) in enumerate(grid.boxes()):
        y, x = y // factor, x // factor
        acc[..., y : y + th, x : x + tw] += tiles[:, i] * w2d
        weight[..., y : y + th, x : x + tw] += w2d
    return acc / weight


def map_tiled(
    fn: Callable[[Tensor], dict[str, Tensor | None]],
    images: Tensor,
    grid: TileGrid,
    micro_batch: int | None,
    factors: dict[str, int],
) -> dict[str, Tensor | None]:
    """Run ``fn`` over the tiles of ``images`` in chunks of ``micro_batch`` and blend each output.

    ``fn`` maps a tile batch to named outputs; ``factors[name]`` is each output's down-sampling
    relative to the tile (1 for images). Outputs that ``fn`` returns as ``None`` stay ``None``.

    Memory: each chunk's tiles are cut when it runs and its outputs are blended into the result at
    once (the same weighted mean as :func:`blend_tiles`, in the same order), so neither all tiles
    nor all their outputs are ever held; a single tile is the image itself (no copy).
    """
    batch, _, height, width = images.shape
    boxes = list(grid.boxes())
    total = batch * len(boxes)
    chunk = micro_batch or total
    if grid.count == 1:  # whole images: no cutting, no blending
        pieces: dict[str, list[Tensor]] = {}
        nones: set[str] = set()
        for start in range(0, batch, chunk):
            for name, value in fn(images[start : start + chunk]).items():
                if value is None:
                    nones.add(name)
                else:
                    pieces.setdefault(name, []).append(value)
        whole: dict[str, Tensor | None] = {name: None for name in nones}
        for name, parts in pieces.items():
            whole[name] = parts[0] if len(parts) == 1 else torch.cat(parts)
        return whole
    result: dict[str, Tensor | None] = {}
    weights: dict[int, tuple[Tensor, Tensor]] = {}  # per factor: the tile ramp and the summed weight map
    for start in range(0, total, chunk):
        index = range(start, min(total, start + chunk))
        tiles = torch.stack([images[k // len(boxes), :, y : y + grid.tile_h, x : x + grid.tile_w]
                             for k in index for y, x in [boxes[k % len(boxes)]]])
        for name, value in fn(tiles).items():
            if value is None:
                result[name] = None
                continue
            factor = factors.get(name, 1)
            th, tw, overlap = grid.tile_h // factor, grid.tile_w // factor, max(grid.overlap // factor, 0)
            if factor not in weights:
                ramp = _ramp(th, overlap, value.device)[:, None] * _ramp(tw, overlap, value.device)[None, :]
                total_weight = value.new_zeros(1, 1, height // factor, width // factor, dtype=torch.float32)
                for y, x in boxes:
                    total_weight[..., y // factor : y // factor + th, x // factor : x // factor + tw] += ramp
                weights[factor] = ramp, total_weight
            ramp, _ = weights[factor]
            acc = result.get(name)
            if acc is None:
                acc = result[name] = value.new_zeros(batch, value.shape[1], height // factor, width // factor,
                                                     dtype=torch.float32)
            for k, tile in zip(index, value.float()):
                y, x = boxes[k % len(boxes)]
                acc[k // len(boxes), :, y // factor : y // factor + th, x // factor : x // factor + tw] += tile * ramp
    for name, acc in result.items():
        if acc is not None:
            acc /= weights[factors.get(name, 1)][1][0]
    return result
