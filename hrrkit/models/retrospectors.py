"""Build the retrospector a :class:`~hrrkit.models.config.RetrospectorConfig` names."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hrrkit.models.config import ConfigError, RetrospectorConfig
from hrrkit.ops.line_enhance import gaussian_blur_reference

RETROSPECTOR_KINDS = ("none", "identity", "blur", "autoencoder", "latent", "pixel_ddim")


class BlurRetrospector:
    """A weight-free stand-in for a diffusion reconstruction: a Gaussian blur of σ pixels with the
    mirror borders of :func:`hrrkit.ops.line_enhance.gaussian_blur_reference` (any size). It removes
    what a reconstruction removes first — high-frequency detail — at no cost, for CPU demos, tests and
    as an ablation. NFE = 0."""

    def __init__(self, sigma: float = 1.0):
        if not sigma > 0:
            raise ConfigError(f"detector.retrospector.blur_sigma={sigma}: must be > 0")
        self.sigma = float(sigma)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return gaussian_blur_reference(images, self.sigma)

    def cost(self) -> dict[str, float]:
        return {"nfe": 0.0}


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


def build_retrospector(config: RetrospectorConfig, device: torch.device | str | None = None) -> Callable | None:
    """The retrospector callable (images (B,3,H,W) in [-1, 1] → reconstruction), or ``None`` for ``none``."""
    kind = config.kind
    if kind not in RETROSPECTOR_KINDS:
        raise ConfigError(f"detector.retrospector.kind={kind!r}: choose one of {RETROSPECTOR_KINDS}")
    if kind == "none":
        return None
    if kind == "identity":
        return _identity
    if kind == "blur":
        return BlurRetrospector(config.blur_sigma)
    if not config.path:
        raise ConfigError(f"detector.retrospector.path: required for kind={kind!r} (a local diffusers folder or "
                          ".safetensors file)")
    from hrrkit.retrospect import autoencoder, latent, pixel_ddim

    cls = {"autoencoder": autoencoder.AutoencoderRetrospector, "latent": latent.LatentRetrospector,
           "pixel_ddim": pixel_ddim.PixelDDIMRetrospector}[kind]
    return cls.from_pretrained(config.path, device=device, **config.options)
