"""The :class:`Retrospector` interface: image batch in [-1, 1] → reconstruction, residual, latent error.

A retrospector reconstructs an image with a pretrained generative model; a detector then learns
from what the reconstruction changed (DIRE's residual ``|x − x̂|``, LaRE²'s latent error). Every
retrospector here

* takes a float batch ``(B, 3, H, W)`` in ``[-1, 1]`` of any ``H, W`` (reflection-padded to the
  model's multiple and cropped back, optionally processed in overlapping tiles),
* is a plain callable ``images → reconstruction`` of the same shape, device and dtype, so it can
  be handed to :class:`hrrkit.nn.MultiScaleStyleRetrospection` (it is *not* an ``nn.Module``: the
  frozen diffusion weights must not end up in a detector's ``state_dict`` or optimiser),
* reports its cost in network evaluations per image (NFE) through :meth:`Retrospector.cost`,
* has a stable config (settings + a fingerprint of the weights) hashed into cache keys.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hrrkit.retrospect.padding import TileGrid, crop_to, make_tile_grid, map_tiled, pad_to_multiple
from hrrkit.utils.tiling import DEFAULT_CALL_PIXELS

# Bump when a change to the algorithms changes reconstructions for the same settings and weights;
# it is part of every config hash, so old cache entries are not reused silently.
ALGORITHM_VERSION = 1

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``"bfloat16"``/``torch.bfloat16`` → ``torch.bfloat16``; a clear error for anything else."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"unsupported compute dtype {dtype}; choose one of {list(_DTYPES)}")
        return dtype
    name = str(dtype).replace("torch.", "")
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}
    name = aliases.get(name, name)
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {list(_DTYPES)}")
    return _DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class RetrospectionOutput:
    """What a retrospector returns for a batch.

    Attributes:
        reconstruction: ``(B, 3, H, W)`` in the input's dtype and device, nominally in [-1, 1].
        residual: ``(B, 3, H, W)``, ``|images − reconstruction|`` (DIRE's residual, same units).
        latent_error: ``(B, C_lat, ceil(H/f), ceil(W/f))`` ``|z − ẑ|`` in the model's scaled latent
            space (``f`` the VAE factor), or ``None`` for retrospectors without a latent denoiser.
        nfe: denoiser network evaluations each image cost (counted, tiles included).
    """

    reconstruction: Tensor
    residual: Tensor
    latent_error: Tensor | None
    nfe: int


@dataclass(frozen=True)
class RetrospectionCost:
    """Cost of reconstructing one image.

    Attributes:
        unet_evals: denoiser (UNet) evaluations per tile.
        vae_encodes / vae_decodes: VAE passes per tile.
        tiles: tiles per image (1 without tiling or for an image that fits one tile).
    """

    unet_evals: int
    vae_encodes: int
    vae_decodes: int
    tiles: int = 1

    @property
    def nfe(self) -> int:
        """Network function evaluations per image: UNet calls × tiles (the number papers quote)."""
        return self.unet_evals * self.tiles

    def as_dict(self) -> dict[str, int]:
        return {
            "nfe": self.nfe,
            "unet_evals_per_tile": self.unet_evals,
            "vae_encodes_per_tile": self.vae_encodes,
            "vae_decodes_per_tile": self.vae_decodes,
            "tiles": self.tiles,
        }


def nfe_per_image(calls: int, batch: int, tiles: int, micro_batch: int | None) -> int:
    """Network evaluations per image from ``calls`` made while reconstructing ``batch`` images of
    ``tiles`` tiles each, ``micro_batch`` tiles per call (``None``: all ``batch × tiles`` at once).

    Every call processes one chunk of tiles for the whole batch, so an image costs
    ``calls / chunks`` evaluations per tile, times its tiles.
    """
    total_tiles = batch * tiles
    if total_tiles == 0:
        return 0
    chunks = math.ceil(total_tiles / (micro_batch or total_tiles))
    return (calls // chunks) * tiles


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex SHA-256 (first ``length`` chars) of a JSON-serialisable object, key order ignored."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def weights_fingerprint(modules: Iterable[nn.Module | Tensor | None]) -> str:
    """Content hash of the parameters and buffers of ``modules`` (names, shapes, dtypes, bytes).

    Two loads of the same weights give the same fingerprint wherever the files live; any changed
    weight changes it. Costs one pass over the weights (a few seconds for Stable Diffusion).
    """
    digest = hashlib.blake2b(digest_size=16)
    for index, module in enumerate(modules):
        digest.update(f"#{index}".encode())
        if module is None:
            digest.update(b"none")
            continue
        items = [("tensor", module)] if isinstance(module, Tensor) else sorted(module.state_dict().items())
        for name, tensor in items:
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def unet_downsampling(unet: nn.Module) -> int:
    """Total down-sampling factor of a diffusers UNet (each non-final down block halves)."""
    config = getattr(unet, "config", None)
    blocks = getattr(config, "block_out_channels", None) if config is not None else None
    if blocks is None:
        return int(getattr(config, "downsampling_factor", 1) or 1) if config is not None else 1
    return 2 ** (len(blocks) - 1)


class Retrospector(abc.ABC):
    """Base class: padding, tiling, dtype/device handling, output assembly, config hashing.

    Subclasses implement :meth:`_reconstruct_tiles` (a batch whose size is a multiple of
    :attr:`size_multiple` → reconstruction and optional latent), :meth:`settings`,
    :meth:`_cost_per_tile` and :meth:`_modules`.

    Args:
        dtype: compute dtype of the networks (``float32``; ``bfloat16``/``float16`` on GPU).
            Scheduler arithmetic always runs in float32.
        tile_size: images whose padded side exceeds this (px) are processed in overlapping
            tiles of this size; ``None`` processes every image whole.
        tile_overlap: overlap between tiles (px); seams are cross-faded over it.
        micro_batch: at most this many images/tiles per network call (``None``: all at once).
        call_pixels: at most this many (padded) pixels per network call, so that memory stays
            bounded whatever the batch and the image size: images (or tiles) go to the network in
            groups under it, and an image above it is cut into overlapping square tiles of the largest
            side (a multiple of :attr:`size_multiple`) whose area fits it, cross-faded over
            ``tile_overlap`` like ``tile_size`` tiles. ``tile_size``, when given, decides the tiles.
            Default :data:`~hrrkit.utils.tiling.DEFAULT_CALL_PIXELS` (512 x 512: an image up to that
            size is reconstructed whole, as without the bound); ``None``: no bound.
        channels_last: convert the networks to channels-last memory format (faster on GPU).
        compile: wrap the networks with ``torch.compile`` (first call compiles, ~30 s+).
        clamp: clamp the reconstruction to [-1, 1], as an image would be (default). The latent
            error is never clamped.
    """

    name: str = "retrospector"

    def __init__(
        self,
        *,
        dtype: torch.dtype | str = torch.float32,
        tile_size: int | None = None,
        tile_overlap: int = 32,
        micro_batch: int | None = None,
        call_pixels: int | None = DEFAULT_CALL_PIXELS,
        channels_last: bool = False,
        compile: bool = False,
        clamp: bool = True,
    ) -> None:
        self.clamp = clamp
        self.dtype = parse_dtype(dtype)
        if tile_size is not None and tile_size < 1:
            raise ValueError(f"tile_size must be positive or None, got {tile_size}")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        if micro_batch is not None and micro_batch < 1:
            raise ValueError(f"micro_batch must be positive or None, got {micro_batch}")
        if call_pixels is not None and call_pixels < 1:
            raise ValueError(f"call_pixels must be positive or None, got {call_pixels}")
        self.call_pixels = call_pixels
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.micro_batch = micro_batch
        self.channels_last = channels_last
        self.compile = compile
        self._fingerprint: str | None = None
        self._nfe_counter = 0

    # ----------------------------------------------------------------------------------------
    # what subclasses provide
    @property
    @abc.abstractmethod
    def size_multiple(self) -> int:
        """Padded image sides must be divisible by this (px)."""

    @property
    def latent_factor(self) -> int:
        """Down-sampling of the latent error relative to the image (1 when there is none)."""
        return 1

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """The settings that change the output (JSON-serialisable)."""

    @abc.abstractmethod
    def _cost_per_tile(self) -> RetrospectionCost:
        """UNet/VAE passes for one tile."""

    @abc.abstractmethod
    def _modules(self) -> list[nn.Module | Tensor | None]:
        """The networks (and fixed tensors such as a conditioning embedding) the output depends on."""

    @abc.abstractmethod
    def _reconstruct_tiles(self, tiles: Tensor) -> dict[str, Tensor | None]:
        """``(N, 3, h, w)`` float32 on :attr:`device`, sizes multiples of :attr:`size_multiple` →
        ``{"reconstruction": (N, 3, h, w) float32, "latent_error": (N, C, h/f, w/f) float32 | None}``.
        Must add the UNet calls it makes to ``self._nfe_counter`` once per call."""

    # ----------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for module in self._modules():
            if isinstance(module, nn.Module):
                for p in module.parameters():
                    return p.device
        return torch.device("cpu")

    def to(self, device: torch.device | str | None = None) -> Retrospector:
        """Move the networks to ``device`` (the compute dtype is fixed at construction)."""
        for module in self._modules():
            if isinstance(module, nn.Module):
                module.to(device=device)
        self._move_extra(torch.device(device) if device is not None else self.device)
        return self

    def _move_extra(self, device: torch.device) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Hook for subclasses holding plain tensors (e.g. a conditioning embedding)."""

    def _prepare_module(self, module: nn.Module) -> nn.Module:
        """Eval mode, no grads, compute dtype, optional channels-last and ``torch.compile``."""
        module.eval().requires_grad_(False)
        if any(p.dtype != self.dtype for p in module.parameters()):
            module.to(dtype=self.dtype)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.compile:
            module = torch.compile(module)  # type: ignore[assignment]
        return module

    # ----------------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """Everything the output depends on: class, algorithm version, settings, compute dtype,
        tiling and a content fingerprint of the weights. Device, batch size, channels-last and
        compile are left out (they do not change the result beyond float rounding)."""
        return {
            "retrospector": self.name,
            "algorithm_version": ALGORITHM_VERSION,
            "settings": self.settings(),
            "dtype": dtype_name(self.dtype),
            "tile_size": self.tile_size,
            "tile_overlap": self.tile_overlap if self.tile_size is not None or self.call_pixels is not None else None,
            # only where it cuts images into tiles; grouping images into calls changes nothing
            **({"call_pixels": self.call_pixels} if self.call_pixels is not None and self.tile_size is None else {}),
            "clamp": self.clamp,
            "weights": self.weights_fingerprint(),
        }

    def config_hash(self) -> str:
        """16 hex chars identifying :meth:`config_dict`; the cache key's config half."""
        return stable_hash(self.config_dict())

    def weights_fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self._modules())
        return self._fingerprint

    def cost(self, image_size: tuple[int, int] | None = None) -> RetrospectionCost:
        """Per-image cost for the current settings.

        ``image_size=(H, W)`` counts the tiles that size needs; without it, one tile is assumed.
        """
        per_tile = self._cost_per_tile()
        tiles = 1
        if image_size is not None:
            tiles = self.plan(image_size)[0].count
        return RetrospectionCost(per_tile.unet_evals, per_tile.vae_encodes, per_tile.vae_decodes, tiles)

    def plan(self, image_size: tuple[int, int]) -> tuple[TileGrid, int | None]:
        """How an ``(H, W)`` image is processed: its tile grid (over the padded image) and the most
        tiles or images per network call (``None``: all at once), from ``tile_size``,
        ``micro_batch`` and ``call_pixels``."""
        from hrrkit.retrospect.padding import padded_size

        ph, pw = padded_size(*image_size, self.size_multiple)
        tile = self.tile_size
        if tile is None and self.call_pixels is not None and ph * pw > self.call_pixels:
            tile = max(self.size_multiple, int(math.isqrt(self.call_pixels)) // self.size_multiple * self.size_multiple)
        grid = make_tile_grid(ph, pw, tile, self.tile_overlap, self.size_multiple)
        chunk = self.micro_batch
        if self.call_pixels is not None:
            fits = max(1, self.call_pixels // (grid.tile_h * grid.tile_w))
            chunk = fits if chunk is None else min(chunk, fits)
        return grid, chunk

    # ----------------------------------------------------------------------------------------
    def _validate(self, images: Tensor) -> None:
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a batch (B, 3, H, W), got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [-1, 1], got dtype {images.dtype}")
        if images.numel() == 0:
            raise ValueError(f"images is empty: shape {tuple(images.shape)}")
        lo_t, hi_t = torch.aminmax(images.detach())
        lo, hi = float(lo_t), float(hi_t)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("images contain NaN or Inf")
        # Line enhancement and dither push values a little past ±1; a range like [0, 255] is a bug.
        if lo < -3.0 or hi > 3.0:
            raise ValueError(
                f"images must be scaled to [-1, 1]; got values in [{lo:.3g}, {hi:.3g}] "
                "(pass x / 127.5 - 1 for 8-bit images)"
            )

    def retrospect(self, images: Tensor) -> RetrospectionOutput:
        """Reconstruct a batch ``(B, 3, H, W)`` in [-1, 1] of any size.

        Returns reconstruction and residual in the input's dtype and device, the latent error
        (if any) in float32, and the NFE each image cost. Runs under ``torch.no_grad`` (the
        output may still be used in a graph that needs gradients elsewhere).
        """
        self._validate(images)
        in_device, in_dtype = images.device, images.dtype
        device = self.device
        with torch.no_grad():
            x = images.detach().to(device=device, dtype=torch.float32)
            padded, info = pad_to_multiple(x, self.size_multiple)
            grid, chunk = self.plan(tuple(x.shape[-2:]))
            self._nfe_counter = 0
            out = map_tiled(
                self._reconstruct_tiles,
                padded,
                grid,
                chunk,
                {"reconstruction": 1, "latent_error": self.latent_factor},
            )
            nfe = nfe_per_image(self._nfe_counter, padded.shape[0], grid.count, chunk)
            recon = crop_to(out["reconstruction"], info)  # type: ignore[arg-type]
            if self.clamp:
                recon = recon.clamp(-1.0, 1.0)
            latent_error = None
            if out.get("latent_error") is not None:
                latent_error = crop_to(out["latent_error"], info, self.latent_factor)  # type: ignore[arg-type]
            residual = (x - recon).abs()
        return RetrospectionOutput(
            reconstruction=recon.to(device=in_device, dtype=in_dtype),
            residual=residual.to(device=in_device, dtype=in_dtype),
            latent_error=None if latent_error is None else latent_error.to(device=in_device),
            nfe=nfe,
        )

    def __call__(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [-1, 1] → reconstruction of the same shape, device and dtype."""
        return self.retrospect(images).reconstruction

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.settings().items() if not isinstance(v, dict)}
        text = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({text}, dtype={dtype_name(self.dtype)}, tile_size={self.tile_size}, nfe={self.cost().nfe})"
