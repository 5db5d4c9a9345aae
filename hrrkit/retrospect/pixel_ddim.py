"""DIRE-style pixel-space retrospection: DDIM inversion to step T and DDIM sampling back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hrrkit.retrospect.base import RetrospectionCost, Retrospector, unet_downsampling
from hrrkit.retrospect.ddim import PIXEL_SCHEDULER_DEFAULTS, DDIMChain, model_output_fn


class PixelDDIMRetrospector(Retrospector):
    """DIRE (Wang et al., ICCV 2023): x → DDIM-invert to x_T → DDIM-sample back to x̂.

    Uses a pixel-space unconditional :class:`diffusers.UNet2DModel` (DIRE: OpenAI's ADM
    256×256 unconditional, converted to diffusers format) with 20 inversion + 20 sampling steps.

    Args:
        unet: a ``UNet2DModel`` (or any module with the same call signature and ``config``).
        scheduler_config: the diffusers scheduler config the UNet was trained with (any
            scheduler class; only the DDIM-relevant keys are used). Default: the DDPM/ADM linear
            schedule, ``clip_sample=True``.
        steps: DDIM grid size, each way (NFE = 2 × int(steps × strength)).
        strength: fraction of the grid inverted (1.0 = all the way to the last timestep).
        clip_sample: clip x̂₀ to [-1, 1] inside each step (``None``: the scheduler config's value).
        **kwargs: :class:`~hrrkit.retrospect.base.Retrospector` options (dtype, tiling, ...).
    """

    name = "pixel_ddim"

    def __init__(
        self,
        unet: nn.Module,
        scheduler_config: dict[str, Any] | None = None,
        *,
        steps: int = 20,
        strength: float = 1.0,
        clip_sample: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
        ``allow_download=True``."""
        from hrrkit.retrospect.loading import load_pixel_unet, load_scheduler_config

        unet = load_pixel_unet(path, config=config, allow_download=allow_download)
        scheduler = kwargs.pop("scheduler_config", None) or load_scheduler_config(path)
        out = cls(unet, scheduler, **kwargs)
        return out.to(device) if device is not None else out

    @property
    def size_multiple(self) -> int:
        return self._downsampling

    def settings(self) -> dict[str, Any]:
        return self.chain.settings()

    def _cost_per_tile(self) -> RetrospectionCost:
        return RetrospectionCost(unet_evals=self.chain.nfe, vae_encodes=0, vae_decodes=0)

    def _modules(self) -> list[nn.Module | Tensor | None]:
        return [self.unet]

    def _count(self) -> None:
        self._nfe_counter += 1

    def _reconstruct_tiles(self, tiles: Tensor) -> dict[str, Tensor | None]:
        if self.channels_last:
            tiles = tiles.contiguous(memory_format=torch.channels_last)
        model = model_output_fn(self.unet, self._count)
        noise = self.chain.invert(tiles, model)
        recon = self.chain.sample(noise, model)
        return {"reconstruction": recon, "latent_error": None}
