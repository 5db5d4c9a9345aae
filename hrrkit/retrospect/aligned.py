"""Autoencoder round trips of whole photographs at native size, for aligned training data and the
zero-shot score (``hrrkit data align``, ``hrrkit zero-shot``).

"Aligned" data (Rajan et al., "Aligned Datasets Improve Detection of Latent Diffusion-Generated
Images", ICLR 2025) pairs every real photo with its reconstruction through a latent diffusion
model's autoencoder: the two differ only in what the autoencoder does to pixels, so a detector
trained on them cannot learn content, size or style. AEROBLADE (Ricker et al., CVPR 2024) scores
an image by how well the same round trip reproduces it.

Both need the same three steps, which live here: crop a photo to a multiple of the latent grid
(top-left anchored, no resize), reconstruct it with each :class:`AutoencoderRetrospector` (tiled
above a size limit), and turn the result back into 8-bit pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hrrkit.retrospect.autoencoder import AutoencoderRetrospector

__all__ = [
    "ALIGN_MULTIPLE",
    "DEFAULT_TILE_SIZE",
    "AutoencoderSpec",
    "autoencoder_name",
    "crop_multiple",
    "crop_to_multiple",
    "load_autoencoders",
    "reconstruct_uint8",
    "uint8_to_batch",
]

# Photos are cropped to a multiple of 8 px: the latent grid of every Stable Diffusion / SDXL / SD3 /
# FLUX autoencoder, and JPEG's 8x8 block grid.
ALIGN_MULTIPLE = 8
# Sides above this are reconstructed in overlapping tiles (hrrkit's tiling, seams cross-faded over
# the overlap). 1024 keeps most photos whole (tiles leave faint seams a detector could learn) while
# bounding memory and time: activations grow with a tile's pixels, mid-block attention with their square.
DEFAULT_TILE_SIZE = 1024


class AutoencoderSpec:
    """A named autoencoder to load: ``"PATH"`` or ``"NAME=PATH"`` (``PATH`` a diffusers pipeline
    folder, an ``AutoencoderKL`` folder or a ``.safetensors`` file, as
    :func:`hrrkit.retrospect.loading.load_vae` reads). The name is the generator name of its
    reconstructions (``fake/<name>/``); without one it is :func:`autoencoder_name` of the path."""

    def __init__(self, spec: str | Path) -> None:
        text = str(spec)
        name, sep, path = text.partition("=")
        if sep and name and "/" not in name and not Path(text).exists():
            self.name, self.path = name, Path(path).expanduser()
        else:
            self.path = Path(text).expanduser()
            self.name = autoencoder_name(self.path)
        if not self.name or self.name.startswith(".") or "/" in self.name:
            raise ValueError(f"autoencoder name {self.name!r} (from {text!r}) cannot be a folder name")

    def __repr__(self) -> str:
        return f"AutoencoderSpec({self.name}={self.path})"


def autoencoder_name(path: str | Path) -> str:
    """A folder name for an autoencoder's reconstructions: the pipeline or model folder's name
    (``/models/stable-diffusion-v1-5`` → ``stable-diffusion-v1-5``; ``.../sd15/vae`` → ``sd15``), or a
    single file's stem (``ae.safetensors`` → ``ae``)."""
    p = Path(path).expanduser()
    if p.suffix == ".safetensors":
        return p.stem
    p = Path(str(p).rstrip("/"))
    return p.parent.name if p.name == "vae" and p.parent.name else p.name


def load_autoencoders(
    specs: Sequence[str | Path | AutoencoderSpec],
    *,
    tile_size: int | None = DEFAULT_TILE_SIZE,
    tile_overlap: int = 64,
    device: torch.device | str | None = None,
) -> dict[str, AutoencoderRetrospector]:
    """``{name: AutoencoderRetrospector}`` in fp32 for each spec (see :class:`AutoencoderSpec`).

    Raises:
        ValueError: no specs, or two autoencoders with one name (give ``NAME=PATH``).
        hrrkit.retrospect.loading.WeightsLoadError: a path holds no loadable ``AutoencoderKL``.
    """
    parsed = [s if isinstance(s, AutoencoderSpec) else AutoencoderSpec(s) for s in specs]
    if not parsed:
        raise ValueError("give at least one autoencoder (--vae PATH)")
    names = [s.name for s in parsed]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"two autoencoders are named {clashes}: name them apart with --vae NAME=PATH")
    return {
        s.name: AutoencoderRetrospector.from_pretrained(
            s.path, dtype="float32", tile_size=tile_size, tile_overlap=tile_overlap, device=device
        )
        for s in parsed
    }


def crop_multiple(retrospectors: Sequence[AutoencoderRetrospector] = ()) -> int:
    """The side multiple photos are cropped to: lcm of :data:`ALIGN_MULTIPLE` and every latent factor."""
    multiple = ALIGN_MULTIPLE
    for r in retrospectors:
        multiple = math.lcm(multiple, r.size_multiple)
    return multiple


def crop_to_multiple(array: np.ndarray, multiple: int = ALIGN_MULTIPLE) -> np.ndarray:
    """The top-left ``(H − H mod m, W − W mod m)`` window of an ``(H, W, C)`` array (a view, no copy).

    Anchored at the top-left so a JPEG's 8x8 block grid stays where it was (a centred crop would
    shift it by up to 7 px); at most ``m − 1`` rows and columns are dropped, nothing is resized.

    Raises:
        ValueError: a side shorter than ``multiple``.
    """
    h, w = array.shape[:2]
    if h < multiple or w < multiple:
        raise ValueError(f"image of {w}x{h} px is smaller than {multiple} px on a side; it cannot be aligned")
    return array[: h - h % multiple, : w - w % multiple]


def uint8_to_batch(array: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(1, 3, H, W)`` float32 in [−1, 1] (a copy: PIL-backed arrays are read-only)."""
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {array.shape} {array.dtype}")
    return torch.tensor(array).permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)


def reconstruct_uint8(retrospector: AutoencoderRetrospector, array: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 → its autoencoder round trip ``(H, W, 3)`` uint8 (rounded, clamped).

    ``H, W`` should be multiples of the retrospector's latent factor (:func:`crop_to_multiple`);
    other sizes are reflection-padded and cropped back by the retrospector.
    """
    recon = retrospector(uint8_to_batch(array))[0]
    out = recon.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
    return out.permute(1, 2, 0).contiguous().numpy()
