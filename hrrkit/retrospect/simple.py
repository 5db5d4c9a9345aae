"""Weight-free retrospectors: a Gaussian blur stand-in and the identity (an ablation)."""

from __future__ import annotations

import torch

from hrrkit.ops.line_enhance import gaussian_blur_reference, kernel_radius
from hrrkit.retrospect.base import RetrospectionCost
from hrrkit.utils.tiling import map_row_strips

_NO_NETWORK = RetrospectionCost(unet_evals=0, vae_encodes=0, vae_decodes=0)


class BlurRetrospector:
    """A weight-free stand-in for a diffusion reconstruction: a Gaussian blur of σ pixels with the
    mirror borders of :func:`hrrkit.ops.line_enhance.gaussian_blur_reference` (any size). It removes
    what a reconstruction removes first — high-frequency detail — at no cost, for CPU demos, tests and
    as an ablation. NFE = 0. ``(B, C, H, W) → (B, C, H, W)``, no gradient."""

    def __init__(self, sigma: float = 1.0):
        if not sigma > 0:
            raise ValueError(f"retrospector.blur_sigma={sigma}: must be > 0")
        self.sigma = float(sigma)

    #: planes larger than this are blurred in strips of rows (same result, bounded temporaries)
    strip_pixels: int = 1 << 19

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return map_row_strips(lambda x: gaussian_blur_reference(x, self.sigma), images,
                                  kernel_radius(self.sigma, 3.0), self.strip_pixels)

    def cost(self, image_size: tuple[int, int] | None = None) -> RetrospectionCost:
        return _NO_NETWORK

    def __repr__(self) -> str:
        return f"BlurRetrospector(sigma={self.sigma})"


class IdentityRetrospector:
    """Returns its input: the residual is zero (an ablation of the retrospection step). NFE = 0."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def cost(self, image_size: tuple[int, int] | None = None) -> RetrospectionCost:
        return _NO_NETWORK

    def __repr__(self) -> str:
        return "IdentityRetrospector()"
