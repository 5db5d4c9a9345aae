"""Diffusion retrospectors (reconstruction with a diffusion model) and the reconstruction cache.

* :class:`PixelDDIMRetrospector` — DIRE: DDIM inversion + sampling with a pixel ``UNet2DModel``.
* :class:`LatentRetrospector` — VAE → one-step noising or DDIM inversion → conditional UNet → VAE.
* :class:`AutoencoderRetrospector` — VAE encode/decode only (AEROBLADE-like, NFE 0).
* :class:`ReconstructionCache` and :func:`precompute` — resumable, sharded on-disk cache.

Every retrospector is a callable ``(B, 3, H, W) in [-1, 1] → reconstruction`` of the same shape;
:meth:`Retrospector.retrospect` also returns the residual, the latent error and the NFE.
See ``docs/retrospection.md``.
"""

from hrrkit.retrospect.autoencoder import AutoencoderRetrospector
from hrrkit.retrospect.base import RetrospectionCost, RetrospectionOutput, Retrospector
from hrrkit.retrospect.cache import (
    CacheCorruptError,
    ReconstructionCache,
    RunSummary,
    cache_config,
    file_content_hash,
    precompute,
)
from hrrkit.retrospect.latent import LatentRetrospector
from hrrkit.retrospect.loading import WeightsLoadError, WeightsNotFoundError
from hrrkit.retrospect.padding import crop_to, pad_to_multiple
from hrrkit.retrospect.pixel_ddim import PixelDDIMRetrospector

RETROSPECTORS = {
    PixelDDIMRetrospector.name: PixelDDIMRetrospector,
    LatentRetrospector.name: LatentRetrospector,
    AutoencoderRetrospector.name: AutoencoderRetrospector,
}

__all__ = [
    "RETROSPECTORS",
    "AutoencoderRetrospector",
    "CacheCorruptError",
    "LatentRetrospector",
    "PixelDDIMRetrospector",
    "ReconstructionCache",
    "RetrospectionCost",
    "RetrospectionOutput",
    "Retrospector",
    "RunSummary",
    "WeightsLoadError",
    "WeightsNotFoundError",
    "cache_config",
    "crop_to",
    "file_content_hash",
    "pad_to_multiple",
    "precompute",
]
