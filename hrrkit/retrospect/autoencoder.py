"""Autoencoder-only retrospection (AEROBLADE-like): VAE encode → decode, no denoiser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hrrkit.retrospect.base import RetrospectionCost, Retrospector
from hrrkit.retrospect.latent import VAECodec, vae_downsampling


class AutoencoderRetrospector(Retrospector):
    """x̂ = decode(encode(x)) with an ``AutoencoderKL`` (posterior mean, deterministic).

    The cheapest retrospector: no UNet (NFE = 0), one VAE encode and one decode per tile.
    AEROBLADE (Ricker et al., CVPR 2024) observed that a latent diffusion model's own
    autoencoder reconstructs that model's images better than real ones.
    """

    name = "autoencoder"

    def __init__(self, vae: nn.Module, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not hasattr(getattr(vae, "config", None), "latent_channels"):
            raise TypeError("vae must be a diffusers AutoencoderKL (a module whose config has latent_channels)")
        self._factor = vae_downsampling(vae)
        self.vae = self._prepare_module(vae)
        self.codec = VAECodec(self.vae)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        config: str | Path | None = None,
        original_config: str | Path | None = None,
        allow_download: bool = False,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> AutoencoderRetrospector:
        """Load the VAE from a pipeline folder (``vae/``), a bare ``AutoencoderKL`` folder, or a
        single ``.safetensors`` file (see :mod:`hrrkit.retrospect.loading`)."""
        from hrrkit.retrospect.loading import load_vae

        vae = load_vae(path, config=config, original_config=original_config, allow_download=allow_download)
        out = cls(vae, **kwargs)
        return out.to(device) if device is not None else out

    @property
    def size_multiple(self) -> int:
        return self._factor

    def settings(self) -> dict[str, Any]:
        return {"vae": self.codec.settings()}

    def _cost_per_tile(self) -> RetrospectionCost:
        return RetrospectionCost(unet_evals=0, vae_encodes=1, vae_decodes=1)

    def _modules(self) -> list[nn.Module | Tensor | None]:
        return [self.vae]

    def _reconstruct_tiles(self, tiles: Tensor) -> dict[str, Tensor | None]:
        if self.channels_last:
            tiles = tiles.contiguous(memory_format=torch.channels_last)
        return {"reconstruction": self.codec.decode(self.codec.encode(tiles)), "latent_error": None}
