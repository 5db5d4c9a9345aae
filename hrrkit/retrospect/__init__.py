"""Retrospectors (reconstructions an image is compared with), their registry and the reconstruction cache.

* :class:`PixelDDIMRetrospector` — DIRE: DDIM inversion + sampling with a pixel ``UNet2DModel``.
* :class:`LatentRetrospector` — VAE → one-step noising or DDIM inversion → conditional UNet → VAE.
* :class:`AutoencoderRetrospector` — VAE encode/decode only (AEROBLADE-like, NFE 0).
* :class:`BlurRetrospector`, :class:`IdentityRetrospector` — weight-free (a stand-in, an ablation).
* :func:`build_retrospector`, :func:`register_retrospector`, :func:`retrospector_kinds` — the one
  registry of kinds (:mod:`hrrkit.retrospect.registry`).
* :class:`ReconstructionCache` and :func:`precompute` — resumable, sharded on-disk cache.

Every retrospector is a callable ``(B, 3, H, W) in [-1, 1] → reconstruction`` of the same shape
whose ``cost()`` returns a :class:`RetrospectionCost`; :meth:`Retrospector.retrospect` also
returns the residual, the latent error and the NFE. See ``docs/retrospection.md``.

The diffusers-backed classes are imported on first use, so importing this package (and
``hrrkit.nn``, ``hrrkit.models``) does not import diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

from hrrkit.retrospect.base import RetrospectionCost, RetrospectionOutput, Retrospector
from hrrkit.retrospect.cache import (
    CacheCorruptError,
    ReconstructionCache,
    RunSummary,
    cache_config,
    file_content_hash,
    precompute,
)
from hrrkit.retrospect.loading import WeightsLoadError, WeightsNotFoundError
from hrrkit.retrospect.padding import crop_to, pad_to_multiple
from hrrkit.retrospect.registry import (
    RetrospectorKind,
    build_retrospector,
    register_retrospector,
    retrospector_kind,
    retrospector_kinds,
)
from hrrkit.retrospect.simple import BlurRetrospector, IdentityRetrospector

_LAZY = {
    "AutoencoderRetrospector": "hrrkit.retrospect.autoencoder",
    "LatentRetrospector": "hrrkit.retrospect.latent",
    "PixelDDIMRetrospector": "hrrkit.retrospect.pixel_ddim",
}

__all__ = [
    "AutoencoderRetrospector",
    "BlurRetrospector",
    "CacheCorruptError",
    "IdentityRetrospector",
    "LatentRetrospector",
    "PixelDDIMRetrospector",
    "ReconstructionCache",
    "RetrospectionCost",
    "RetrospectionOutput",
    "Retrospector",
    "RetrospectorKind",
    "RunSummary",
    "WeightsLoadError",
    "WeightsNotFoundError",
    "build_retrospector",
    "cache_config",
    "crop_to",
    "file_content_hash",
    "pad_to_multiple",
    "precompute",
    "register_retrospector",
    "retrospector_kind",
    "retrospector_kinds",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hrrkit.retrospect' has no attribute {name!r}")
