"""Build the retrospector a :class:`~hrrkit.models.config.RetrospectorConfig` names."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from hrrkit.models.config import ConfigError, RetrospectorConfig

RETROSPECTOR_KINDS = ("none", "identity", "blur", "autoencoder", "latent", "pixel_ddim")


class BlurRetrospector:
    """A weight-free stand-in for a diffusion reconstruction: a Gaussian blur of σ pixels
    (reflection borders). It removes what a reconstruction removes first — high-frequency detail —
    at no cost, for CPU demos, tests and as an ablation. NFE = 0."""

    def __init__(self, sigma: float = 1.0):
        if not sigma > 0:
            raise ConfigError(f"detector.retrospector.blur_sigma={sigma}: must be > 0")
        self.sigma = float(sigma)
        radius = max(1, int(3 * self.sigma + 0.5))
        x = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (x / self.sigma) ** 2)
        self.kernel = (k / k.sum()).float()
        self.radius = radius

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            n, c, h, w = images.shape
            k = self.kernel.to(images.device, images.dtype)
            x = images.reshape(n * c, 1, h, w)
            # reflection needs pad < size: replicate for tiny images
            mode = "reflect" if min(h, w) > self.radius else "replicate"
            x = F.pad(x, (self.radius, self.radius, 0, 0), mode=mode)
            x = F.conv2d(x, k.view(1, 1, 1, -1))
            x = F.pad(x, (0, 0, self.radius, self.radius), mode=mode)
            x = F.conv2d(x, k.view(1, 1, -1, 1))
            return x.reshape(n, c, h, w)

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
