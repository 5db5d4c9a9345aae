"""Pixel-space retrospection: DIRE's DDIM inversion + sampling, or a one-step denoise (NFE 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import DDIMScheduler
from torch import Tensor, nn

from hrrkit.retrospect.base import RetrospectionCost, Retrospector, unet_downsampling
from hrrkit.retrospect.ddim import (
    PIXEL_SCHEDULER_DEFAULTS,
    DDIMChain,
    fixed_noise,
    model_output_fn,
    predict_original,
)

PixelMode = Literal["invert", "one_step"]


class PixelDDIMRetrospector(Retrospector):
    """A pixel-space unconditional :class:`diffusers.UNet2DModel` reconstructs the image.

    Modes:
        ``"invert"`` (default; DIRE, Wang et al., ICCV 2023): x → DDIM-invert to ``strength`` of a
            ``steps`` grid → DDIM-sample back to x̂ (η = 0, deterministic). NFE = 2 · int(steps ·
            strength); DIRE used OpenAI's ADM 256×256 with 20 + 20 steps.
        ``"one_step"``: x_t = √ᾱ_t x + √(1−ᾱ_t) ε with a fixed-seed ε (the same for every image of
            a given size, so results never depend on batching), then one UNet call predicts x̂₀.
            NFE = 1. The default of hrrkit's shipped model (:mod:`hrrkit.retrospect.shipped`).

    Args:
        unet: a ``UNet2DModel`` (or any module with the same call signature and ``config``).
        scheduler_config: the diffusers scheduler config the UNet was trained with (any
            scheduler class; only the DDIM-relevant keys are used). Default: the DDPM/ADM linear
            schedule, ``clip_sample=True``.
        mode: ``"invert"`` or ``"one_step"`` (above).
        steps: DDIM grid size, each way (``invert``).
        strength: fraction of the grid inverted (1.0 = all the way to the last timestep).
        clip_sample: clip x̂₀ to [-1, 1] inside each step (``None``: the scheduler config's value).
        timestep, seed: the noise level (in ``[0, num_train_timesteps)``) and the noise seed of
            ``one_step``.
        **kwargs: :class:`~hrrkit.retrospect.base.Retrospector` options (dtype, tiling, ...).
    """

    name = "pixel_ddim"

    def __init__(
        self,
        unet: nn.Module,
        scheduler_config: dict[str, Any] | None = None,
        *,
        mode: PixelMode = "invert",
        steps: int = 20,
        strength: float = 1.0,
        clip_sample: bool | None = None,
        timestep: int = 100,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("invert", "one_step"):
            raise ValueError(f"mode must be 'invert' or 'one_step', got {mode!r}")
        config = getattr(unet, "config", None)
        if config is None or not hasattr(config, "in_channels"):
            raise TypeError("unet must be a diffusers UNet2DModel (a module with a .config holding in_channels)")
        if config.in_channels != 3:
            raise ValueError(
                f"a pixel-space retrospector needs a UNet on RGB images (in_channels=3); this one has "
                f"in_channels={config.in_channels} (a latent UNet? use LatentRetrospector)"
            )
        if getattr(config, "num_class_embeds", None) or getattr(config, "class_embed_type", None):
            raise ValueError("class-conditional UNet2DModel is not supported: DIRE uses an unconditional UNet")
        self.chain = DDIMChain(dict(PIXEL_SCHEDULER_DEFAULTS, **(scheduler_config or {})), steps, strength, clip_sample)
        self.mode: PixelMode = mode
        n_train = int(self.chain.config.get("num_train_timesteps", 1000))
        if mode == "one_step" and not 0 <= timestep < n_train:
            raise ValueError(f"timestep must be in [0, {n_train}), got {timestep}")
        self.timestep = int(timestep)
        self.seed = int(seed)
        self._alphas_cumprod = DDIMScheduler.from_config(self.chain.config).alphas_cumprod.float()
        self._downsampling = unet_downsampling(unet)
        self.unet = self._prepare_module(unet)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        config: str | Path | None = None,
        allow_download: bool = False,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> PixelDDIMRetrospector:
        """Load the UNet (and its scheduler config, if present) from a local diffusers folder —
        a pipeline folder with ``unet/`` or a bare model folder — or a single ``.safetensors``
        file (its ``config.json`` beside it or given as ``config``). Nothing is downloaded unless
        ``allow_download=True``.

        ``path="hrrkit:<name>"`` loads weights that ship inside hrrkit (``hrrkit:real-photo-unet``,
        see :mod:`hrrkit.retrospect.shipped`) with their recorded default settings, which
        ``kwargs`` override."""
        from hrrkit.retrospect.loading import load_pixel_unet, load_scheduler_config
        from hrrkit.retrospect.shipped import is_shipped_path, shipped_retrospector

        if is_shipped_path(path):
            if config is not None:
                raise ValueError(f"{path} ships with its own config; do not pass config={config!r}")
            return shipped_retrospector(str(path), device=device, **kwargs)

        unet = load_pixel_unet(path, config=config, allow_download=allow_download)
        scheduler = kwargs.pop("scheduler_config", None) or load_scheduler_config(path)
        out = cls(unet, scheduler, **kwargs)
        return out.to(device) if device is not None else out

    @property
    def size_multiple(self) -> int:
        return self._downsampling

    def settings(self) -> dict[str, Any]:
        if self.mode == "one_step":
            return {"mode": "one_step", "timestep": self.timestep, "seed": self.seed, "scheduler": self.chain.config}
        return {"mode": "invert", **self.chain.settings()}

    def _cost_per_tile(self) -> RetrospectionCost:
        unet = 1 if self.mode == "one_step" else self.chain.nfe
        return RetrospectionCost(unet_evals=unet, vae_encodes=0, vae_decodes=0)

    def _modules(self) -> list[nn.Module | Tensor | None]:
        return [self.unet]

    def _count(self) -> None:
        self._nfe_counter += 1

    def _reconstruct_tiles(self, tiles: Tensor) -> dict[str, Tensor | None]:
        if self.channels_last:
            tiles = tiles.contiguous(memory_format=torch.channels_last)
        model = model_output_fn(self.unet, self._count)
        if self.mode == "one_step":
            a = self._alphas_cumprod[self.timestep]
            x_t = a.sqrt() * tiles + (1 - a).sqrt() * fixed_noise(tiles, self.seed)
            recon = predict_original(model(x_t, torch.tensor(self.timestep)), x_t, a, self.chain.prediction_type)
            if self.chain.config.get("clip_sample", False):
                recon = recon.clamp(-1.0, 1.0)
        else:
            recon = self.chain.sample(self.chain.invert(tiles, model), model)
        return {"reconstruction": recon, "latent_error": None}
