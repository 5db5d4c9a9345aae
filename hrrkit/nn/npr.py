"""Neighbouring Pixel Relationships (NPR; Tan et al., "Rethinking the Up-Sampling Operations in
CNN-based Generative Network for Generalizable Deepfake Detection", CVPR 2024).

Generators up-sample, and up-sampling ties each pixel to its neighbours in a 2×2 block. NPR exposes
that relation by subtracting the image's nearest-neighbour down-then-up copy:
``NPR(x) = x − up(down(x, 0.5))``, i.e. each pixel minus the top-left pixel of its 2×2 block.

The original code computes ``up(down(x))`` with two ``F.interpolate(mode="nearest")`` calls, which
returns ``2·⌊H/2⌋`` rows and so fails (shape mismatch) on odd sizes. Here the reference pixel of
position ``(i, j)`` is ``x[2⌊i/2⌋, 2⌊j/2⌋]`` for every size: identical to the original on even sizes
(a test checks it against ``F.interpolate``), and on an odd last row/column the block is one pixel
wide, so its relation is 0. A 1×1 image gives a zero map.
"""

from __future__ import annotations

import torch
from torch import nn


def nearest_down_up(x: torch.Tensor) -> torch.Tensor:
    """``up(down(x, 0.5))`` with nearest neighbours, for any ``(..., H, W)`` with H, W ≥ 1: each
    pixel replaced by the top-left pixel of its 2×2 block. Same shape and dtype as ``x``."""
    if x.dim() < 2 or x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"nearest_down_up: expected (..., H, W) with H, W >= 1, got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    down = x[..., ::2, ::2]
    return down.repeat_interleave(2, dim=-2)[..., :h, :].repeat_interleave(2, dim=-1)[..., :w]


def neighbouring_pixel_relation(x: torch.Tensor, scale: float = 2.0 / 3.0) -> torch.Tensor:
    """``scale · (x − up(down(x, 0.5)))`` (nearest), any size; ``scale`` 2/3 as NPR's code feeds its
    network. ``x``: ``(B, C, H, W)`` (or any ``(..., H, W)``), float; returns the same shape."""
    return scale * (x - nearest_down_up(x))


class NeighbouringPixelRelation(nn.Module):
    """Module form of :func:`neighbouring_pixel_relation` (no parameters): ``(B, C, H, W)`` →
    ``(B, C, H, W)``, any H, W ≥ 1."""

    def __init__(self, scale: float = 2.0 / 3.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return neighbouring_pixel_relation(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


class NPRBackbone(nn.Module):
    """NPR in front of any backbone: ``body(NPR(x))``; keeps the backbone contract (``out_channels``).

    Shapes: ``(B, C, H, W)`` → whatever ``body`` returns for that size (``(B, out_channels, h, w)``)."""

    def __init__(self, body: nn.Module, scale: float = 2.0 / 3.0):
        super().__init__()
        self.npr = NeighbouringPixelRelation(scale)
        self.body = body
        self.out_channels = body.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.npr(x))
