"""Multi-scale Style Retrospection (MSR): the layers around the retrospector and the module that
composes them (design.md §2–3).

Pipeline of :class:`MultiScaleStyleRetrospection`, every stage switchable off for ablations::

    images (a batch, or a list of differently sized images)
      → NoisyRescale        S scaled views, antialiased resampling + Gaussian dither (full images
                            grouped by size, or fixed-size crops/tiles)
      → LineEnhancement     x̃ = x + β·|∇G_σ₂ ∗ sharpen_{σ₁,a}(x)|
      → retrospector        any callable image batch → reconstruction x̂ (diffusion model, blur …)
      → residual            e = |x̃ − x̂|   (or the image itself, or both, as the backbone input)
      → backbone            user-given, shared across scales → feature maps F_s
      → StyleStatistics     multi-level moments of F_s → style / style-normalised content descriptor
      → per-image averaging over crops/tiles, fusion across scales (mean or learned weights)

The KL regulariser (:class:`ScaleConsistencyKL`) acts on per-scale *predictions*, which the
detector's head produces from :attr:`MSROutput.descriptors`; see :class:`MSROutput`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrrkit.ops.line_enhance import kernel_radius, line_enhance
from hrrkit.ops.moments import check_levels, multilevel_moments, num_cells, residual_multilevel_moments
from hrrkit.utils.profile import stage as profile_stage
from hrrkit.utils.tiling import DEFAULT_CALL_PIXELS, map_row_strips, map_spatial_tiles, tile_starts

ImageBatch = torch.Tensor | Sequence[torch.Tensor]

__all__ = [
    "LineEnhancement",
    "MSROutput",
    "MultiScaleStyleRetrospection",
    "NoisyRescale",
    "ScaleConsistencyKL",
    "ScaledViews",
    "StyleStatistics",
    "StyleStats",
]


# ----------------------------------------------------------------------------------- rescaling


@dataclass
class ScaledViews:
    """What :class:`NoisyRescale` returns.

    For every scale ``s`` the views come in *groups* of equal size (one group for a same-size
    batch or for crops/tiles; one group per distinct scaled size for a mixed-size list in
    ``"full"`` mode).

    Attributes:
        scales: the S scale factors.
        groups: ``groups[s][g]`` is a (n_g, C, h_g, w_g) tensor of views.
        image_index: ``image_index[s][g]`` (n_g,) long: the input image each view comes from.
        boxes: ``boxes[s][g]`` (n_g, 4) long: ``(top, left, height, width)`` of the view inside
            its scaled image (the whole image in ``"full"`` mode).
        scaled_sizes: ``scaled_sizes[s][i]`` = (h, w) of image i at scale s, before cropping.
        num_images: number of input images B.
    """

    scales: tuple[float, ...]
    groups: list[list[torch.Tensor]]
    image_index: list[list[torch.Tensor]]
    boxes: list[list[torch.Tensor]]
    scaled_sizes: list[list[tuple[int, int]]]
    num_images: int


def _as_image_list(images: ImageBatch, where: str) -> tuple[list[torch.Tensor], bool]:
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"{where}: expected images (B, C, H, W) or a list of (C, H, W), got {tuple(images.shape)}")
        return list(images.unbind(0)), True
    images = list(images)
    if not images:
        raise ValueError(f"{where}: got an empty list of images")
    for i, img in enumerate(images):
        if not isinstance(img, torch.Tensor) or img.dim() != 3:
            raise ValueError(f"{where}: image {i} must be a (C, H, W) tensor")
    channels = {img.shape[0] for img in images}
    if len(channels) > 1:
        raise ValueError(f"{where}: images have different channel counts {sorted(channels)}")
    return images, False


class NoisyRescale(nn.Module):
    """S scaled views of every image: antialiased resampling plus a small Gaussian dither.

    **Size policy** (for an H × W image and factor s; aspect ratio always kept):

    1. target ``(H·s, W·s)``;
    2. if its longer side exceeds ``max_side``, shrink both sides so it equals ``max_side``;
    3. if its shorter side is below the floor (``min_side``, and in ``"crops"`` mode at least
       ``crop_size``), grow both sides so it equals the floor — the floor wins over ``max_side``
       for extreme aspect ratios, so a view is never smaller than what the next stage needs;
    4. round half up, each side at least 1. Odd sizes stay odd (no padding to even sizes).

    A view whose size equals the input is not resampled (scale 1 costs nothing); otherwise
    ``F.interpolate(mode=mode, antialias=antialias)`` (antialiasing matters when shrinking).

    **Dither**: i.i.d. Gaussian noise of standard deviation ``noise_std`` (image units: 0.01 is
    about 1.3 grey levels for images in [-1, 1], hrrkit's convention) is added to every view of every scale (scale 1 included, so
    "was it resampled" is no cue). It is on in training mode and off in eval mode unless
    ``dither_in_eval``. With ``seed`` set, noise and random crops come from a private generator
    per device seeded once (reproducible sequences; :meth:`reset_rng` restarts them); otherwise
    from torch's global RNG. Values are not clamped.

    **Outputs**: ``"full"``: whole scaled images (mixed sizes are grouped by size). ``"crops"``:
    ``crop_size`` × ``crop_size`` views: in training one random crop per image and scale; in
    eval the tiles covering the scaled image (⌈h/crop⌉ × ⌈w/crop⌉ tiles placed by
    :func:`hrrkit.utils.tiling.tile_starts`, the same rule as the ``tiles`` input policy of
    :mod:`hrrkit.data.dataset`; their number grows with the image, bounded via ``max_side``).

    Args:
        scales: scale factors (> 0), e.g. ``(0.5, 1.0, 2.0)``.
        noise_std: dither standard deviation (>= 0; 0 disables it).
        output: ``"full"`` or ``"crops"``.
        crop_size: side of crops/tiles (required in ``"crops"`` mode).
        min_side: floor of the shorter side of a scaled view, pixels.
        max_side: cap of the longer side of a scaled view, pixels.
        seed: seed of the private generators, or ``None`` for the global RNG.
        dither_in_eval: also dither in eval mode.
        mode: interpolation mode of ``F.interpolate`` (``"bilinear"`` or ``"bicubic"``).
        antialias: antialiased resampling when shrinking.
    """

    def __init__(
        self,
        scales: Sequence[float] = (0.5, 1.0, 2.0),
        noise_std: float = 0.01,
        output: str = "full",
        crop_size: int | None = None,
        min_side: int = 8,
        max_side: int = 2048,
        seed: int | None = None,
        dither_in_eval: bool = False,
        mode: str = "bilinear",
        antialias: bool = True,
    ):
        super().__init__()
        scales = tuple(float(s) for s in scales)
        if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
            raise ValueError(f"NoisyRescale: scales must be positive finite numbers, got {scales}")
        if not math.isfinite(noise_std) or noise_std < 0:
            raise ValueError(f"NoisyRescale: noise_std must be >= 0, got {noise_std}")
        if output not in ("full", "crops"):
            raise ValueError(f"NoisyRescale: output={output!r}, expected 'full' or 'crops'")
        if output == "crops" and (crop_size is None or crop_size < 1):
            raise ValueError("NoisyRescale: output='crops' needs a positive crop_size")
        if min_side < 1 or max_side < min_side:
            raise ValueError(f"NoisyRescale: need 1 <= min_side <= max_side, got {min_side}, {max_side}")
        if mode not in ("bilinear", "bicubic"):
            raise ValueError(f"NoisyRescale: mode={mode!r}, expected 'bilinear' or 'bicubic'")
        self.scales = scales
        self.noise_std = float(noise_std)
        self.output = output
        self.crop_size = int(crop_size) if crop_size is not None else None
        self.min_side = int(min_side)
        self.max_side = int(max_side)
        self.seed = seed
        self.dither_in_eval = bool(dither_in_eval)
        self.mode = mode
        self.antialias = bool(antialias)
        self._generators: dict[str, torch.Generator] = {}

    @classmethod
    def single_scale(cls, output: str = "full", crop_size: int | None = None, seed: int | None = None) -> NoisyRescale:
        """Rescaling switched off: one view per image at scale 1, never resampled, no dither."""
        return cls((1.0,), 0.0, output, crop_size, min_side=1, max_side=1 << 30, seed=seed)

    def reset_rng(self) -> None:
        """Restart the seeded noise/crop sequences."""
        self._generators.clear()

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(int(self.seed))
        return self._generators[key]

    def scaled_size(self, height: int, width: int, scale: float) -> tuple[int, int]:
        """(h, w) of an H × W image at ``scale`` under the size policy (class docstring)."""
        factor = scale
        if max(height, width) * factor > self.max_side:
            factor = self.max_side / max(height, width)
        floor = self.min_side if self.output == "full" else max(self.min_side, self.crop_size)
        if min(height, width) * factor < floor:
            factor = floor / min(height, width)
        h = max(1, int(math.floor(height * factor + 0.5)))
        w = max(1, int(math.floor(width * factor + 0.5)))
        if self.output == "crops":  # rounding must not undo the floor
            h, w = max(h, self.crop_size), max(w, self.crop_size)
        return h, w

    def _resample(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode=self.mode, antialias=self.antialias, align_corners=False)

    def _dither(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise_std == 0 or not (self.training or self.dither_in_eval):
            return x
        noise = torch.randn(x.shape, generator=self._generator(x.device), device=x.device, dtype=x.dtype)
        return x + self.noise_std * noise

    def _crops(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crops or tiles of a same-size group (n, C, h, w) → (views, row-in-group, boxes)."""
        n, _, h, w = x.shape
        c = self.crop_size
        if self.training:
            gen = self._generator(torch.device("cpu"))
            tops = torch.randint(0, h - c + 1, (n,), generator=gen).tolist()
            lefts = torch.randint(0, w - c + 1, (n,), generator=gen).tolist()
            views = torch.stack([x[i, :, t : t + c, l : l + c] for i, (t, l) in enumerate(zip(tops, lefts))])
            rows = torch.arange(n)
            boxes = torch.tensor([[t, l, c, c] for t, l in zip(tops, lefts)], dtype=torch.long).view(n, 4)
            return views, rows, boxes
        positions = [(t, l) for t in tile_starts(h, c) for l in tile_starts(w, c)]
        tiles = x.unfold(2, c, 1).unfold(3, c, 1)  # (n, C, h-c+1, w-c+1, c, c) view, no copy
        tops = torch.tensor([p[0] for p in positions], device=x.device)
        lefts = torch.tensor([p[1] for p in positions], device=x.device)
        views = tiles[:, :, tops, lefts].permute(0, 2, 1, 3, 4).reshape(n * len(positions), x.shape[1], c, c)
        rows = torch.arange(n).repeat_interleave(len(positions))
        boxes = torch.tensor([[t, l, c, c] for t, l in positions], dtype=torch.long).repeat(n, 1)
        return views, rows, boxes

    def forward(self, images: ImageBatch) -> ScaledViews:
        """Args: images (B, C, H, W) or a list of (C, H, W) float tensors (sizes may differ).

        Returns: :class:`ScaledViews`."""
        image_list, _ = _as_image_list(images, "NoisyRescale")
        if not image_list[0].is_floating_point():
            raise TypeError(f"NoisyRescale: images must be floating point, got {image_list[0].dtype}")
        device = image_list[0].device
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(image_list):
            by_size.setdefault(tuple(img.shape[-2:]), []).append(i)
        groups, indices, boxes, sizes = [], [], [], []
        for scale in self.scales:
            scaled: dict[tuple[int, int], list[tuple[torch.Tensor, list[int]]]] = {}
            size_of = [(0, 0)] * len(image_list)
            for (h, w), idx in by_size.items():
                target = self.scaled_size(h, w, scale)
                # one image: a view, not a copy (a 4000 x 3000 photo is 144 MB in float32)
                batch = image_list[idx[0]][None] if len(idx) == 1 else torch.stack([image_list[i] for i in idx])
                scaled.setdefault(target, []).append((self._resample(batch, target), idx))
                for i in idx:
                    size_of[i] = target
            s_groups, s_index, s_boxes = [], [], []
            for (h, w), parts in scaled.items():
                batch = torch.cat([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
                idx = torch.tensor([i for p in parts for i in p[1]], dtype=torch.long)
                if self.output == "crops":
                    batch, rows, box = self._crops(batch)
                    idx = idx[rows]
                else:
                    box = torch.tensor([[0, 0, h, w]], dtype=torch.long).repeat(len(idx), 1)
                s_groups.append(self._dither(batch))
                s_index.append(idx.to(device))
                s_boxes.append(box.to(device))
            if self.output == "crops" and len(s_groups) > 1:  # crops share one size: one group
                s_groups, s_index, s_boxes = [torch.cat(s_groups)], [torch.cat(s_index)], [torch.cat(s_boxes)]
            groups.append(s_groups)
            indices.append(s_index)
            boxes.append(s_boxes)
            sizes.append(size_of)
        return ScaledViews(self.scales, groups, indices, boxes, sizes, len(image_list))

    def extra_repr(self) -> str:
        crop = f", crop_size={self.crop_size}" if self.output == "crops" else ""
        return (
            f"scales={self.scales}, noise_std={self.noise_std:.4g}, output={self.output!r}{crop}, "
            f"min_side={self.min_side}, max_side={self.max_side}, seed={self.seed}"
        )


# ----------------------------------------------------------------------------- line enhancement


class LineEnhancement(nn.Module):
    """x̃ = x + β·edges, edges = Gaussian-derivative magnitude of the unsharp-masked image, per
    channel, symmetric borders, any H, W >= 1 (see :func:`hrrkit.ops.line_enhance`).

    Args:
        sigma_sharpen: σ₁ of the unsharp mask (pixels). amount: sharpening amount a.
        sigma_edge: σ₂ of the Gaussian derivative (pixels). beta: weight of the edge map.
        truncate: kernel radius in σ. eps: magnitude smoothing. impl: op implementation.

    Shapes: (B, C, H, W) → (B, C, H, W), same dtype.
    """

    def __init__(
        self,
        sigma_sharpen: float = 1.0,
        amount: float = 1.0,
        sigma_edge: float = 1.0,
        beta: float = 0.5,
        truncate: float = 3.0,
        eps: float = 1e-6,
        impl: str = "auto",
    ):
        super().__init__()
        self.sigma_sharpen = float(sigma_sharpen)
        self.amount = float(amount)
        self.sigma_edge = float(sigma_edge)
        self.beta = float(beta)
        self.truncate = float(truncate)
        self.eps = float(eps)
        self.impl = impl
        # fail at construction, not at the first batch
        line_enhance(
            torch.zeros(1, 1, 1, 1),
            self.sigma_sharpen,
            self.amount,
            self.sigma_edge,
            self.beta,
            "reference",
            truncate=self.truncate,
            eps=self.eps,
        )

    #: batches of more pixels than this (images x height x width) are enhanced a few images at a time,
    #: and larger images in horizontal strips (see forward)
    strip_pixels: int = 1 << 19

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Large images in strips of rows with a halo of r₁ + r₂ rows (the reach of the unsharp mask plus
        # the edge operator): the same result, but the reference op's temporaries (≈ 20× the plane)
        # are bounded by the strip — a 2048×1536 RGB view needs tens of MB instead of ~800 MB. Many
        # small images likewise go a few at a time (16 views of 512 px would need ~1 GB at once).
        halo = kernel_radius(self.sigma_sharpen, self.truncate) + kernel_radius(self.sigma_edge, self.truncate)
        per_call = max(1, self.strip_pixels // max(1, x.shape[-2] * x.shape[-1]))
        if x.dim() == 4 and x.shape[0] > per_call:
            return torch.cat([map_row_strips(self._enhance, part, halo, self.strip_pixels)
                              for part in x.split(per_call)])
        return map_row_strips(self._enhance, x, halo, self.strip_pixels)

    def _enhance(self, x: torch.Tensor) -> torch.Tensor:
        return line_enhance(
            x,
            self.sigma_sharpen,
            self.amount,
            self.sigma_edge,
            self.beta,
            self.impl,
            truncate=self.truncate,
            eps=self.eps,
        )

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        """The edge map alone (β = 1, minus the image), for inspection and figures."""
        return (
            line_enhance(
                x,
                self.sigma_sharpen,
                self.amount,
                self.sigma_edge,
                1.0,
                self.impl,
                truncate=self.truncate,
                eps=self.eps,
            )
            - x
        )

    def extra_repr(self) -> str:
        return (
            f"sigma_sharpen={self.sigma_sharpen}, amount={self.amount}, sigma_edge={self.sigma_edge}, "
            f"beta={self.beta}, truncate={self.truncate}"
        )


# ---------------------------------------------------------------------------- style statistics

DESCRIPTORS = ("both", "content", "style", "pooled")


@dataclass
class StyleStats:
    """Output of :class:`StyleStatistics` for a batch of N feature maps with C channels and K cells.

    Attributes:
        mean: (N, C, K) cell means (float32; float64 for float64 maps).
        log_std: (N, C, K) ``0.5·log(var + eps)``.
        style: (N, 2C): ``[global mean | global log-std]`` per channel (the level-1 cell).
        content: (N, 2C(K−1)): the finer cells relative to the global style,
            ``[(mean_k − mean)/std | log_std_k − log_std]`` flattened channel-major,
            (N, C, K−1, 2) → (N, 2C(K−1)); invariant to a per-channel affine change of the map.
        descriptor: (N, D) what the head consumes (see ``descriptor`` of the module).
    """

    mean: torch.Tensor
    log_std: torch.Tensor
    style: torch.Tensor
    content: torch.Tensor
    descriptor: torch.Tensor


class StyleStatistics(nn.Module):
    """Multi-level moments of feature maps split into *style* and style-normalised *content*.

    The per-channel global mean and standard deviation of a feature map carry the image's
    "style" (as in AdaIN/instance normalisation); the same moments of finer grid cells, measured
    relative to the global ones, carry where and how the response varies — the part that should
    survive a change of dataset style or generator.

    Args:
        levels: grid levels; must contain 1 (the global cell, the normalising statistics) unless
            ``descriptor == "pooled"``.
        descriptor: what :attr:`StyleStats.descriptor` holds: ``"both"`` (content then style,
            D = 2C·K), ``"content"`` (D = 2C(K−1)), ``"style"`` (D = 2C) or ``"pooled"`` (the
            global mean only, D = C: the statistics stage switched off).
        eps: variance floor inside the logarithm (feature units squared).
        impl: implementation of the moments op.

    Shapes: features (N, C, H, W) → :class:`StyleStats`.
    """

    def __init__(
        self, levels: Sequence[int] = (1, 2, 4), descriptor: str = "both", eps: float = 1e-5, impl: str = "auto"
    ):
        super().__init__()
        self.levels = check_levels(levels, "StyleStatistics")
        if descriptor not in DESCRIPTORS:
            raise ValueError(f"StyleStatistics: descriptor={descriptor!r}, expected one of {DESCRIPTORS}")
        if 1 not in self.levels:
            raise ValueError(f"StyleStatistics: levels must contain 1 (the global cell), got {self.levels}")
        if descriptor == "content" and self.levels == (1,):
            raise ValueError("StyleStatistics: descriptor='content' with levels=(1,) is empty; add finer levels")
        if not eps > 0:
            raise ValueError(f"StyleStatistics: eps must be > 0, got {eps}")
        self.descriptor = descriptor
        self.eps = float(eps)
        self.impl = impl
        self._global = self.levels.index(1)
        self._global_cell = sum(n * n for n in self.levels[: self._global])

    def descriptor_dim(self, channels: int) -> int:
        """D for feature maps with ``channels`` channels."""
        k = num_cells(self.levels)
        return {"both": 2 * channels * k, "content": 2 * channels * (k - 1), "style": 2 * channels, "pooled": channels}[
            self.descriptor
        ]

    def from_moments(self, mean: torch.Tensor, var: torch.Tensor) -> StyleStats:
        """Build :class:`StyleStats` from (N, C, K) moments (e.g. of the residual op)."""
        log_std = 0.5 * torch.log(var + self.eps)
        g = self._global_cell
        g_mean, g_log_std = mean[..., g : g + 1], log_std[..., g : g + 1]
        fine = [k for k in range(mean.shape[-1]) if k != g]
        rel_mean = (mean[..., fine] - g_mean) * torch.exp(-g_log_std)
        rel_log_std = log_std[..., fine] - g_log_std
        content = torch.stack([rel_mean, rel_log_std], dim=-1).flatten(1)
        style = torch.cat([g_mean[..., 0], g_log_std[..., 0]], dim=1)
        if self.descriptor == "both":
            descriptor = torch.cat([content, style], dim=1)
        elif self.descriptor == "content":
            descriptor = content
        elif self.descriptor == "style":
            descriptor = style
        else:
            descriptor = g_mean[..., 0]
        return StyleStats(mean, log_std, style, content, descriptor)

    def forward(self, features: torch.Tensor) -> StyleStats:
        mean, var = multilevel_moments(features, self.levels, self.impl)
        return self.from_moments(mean, var)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, descriptor={self.descriptor!r}, eps={self.eps}"


# -------------------------------------------------------------------------- scale consistency

KL_REDUCTIONS = ("none", "batchmean", "sum")


class ScaleConsistencyKL(nn.Module):
    """Scale-invariance regulariser: KL(p_s ‖ p̄) of each scale's predictive distribution p_s from
    the mean distribution p̄ = (1/S)·Σ_s p_s, summed over classes.

    Args:
        reduction: ``"none"`` → (S, B) per scale and sample; ``"batchmean"`` → the mean over
            scales and samples (for each scale, what ``F.kl_div(..., reduction="batchmean")``
            gives, then averaged over scales); ``"sum"`` → the total.
        kind: ``"binary"`` (one logit per sample, p = sigmoid), ``"categorical"`` (K >= 2 logits,
            p = softmax) or ``"auto"`` (binary for (B,) or (B, 1) logits).
        detach_target: treat p̄ as a constant (a stop-gradient target) instead of letting the
            gradient flow through it too.

    Shapes: ``logits``: a list of S tensors (B,), (B, 1) or (B, K), or one (S, B[, K]) tensor.
    Computed in log space (logsumexp), float32 at least.
    """

    def __init__(self, reduction: str = "batchmean", kind: str = "auto", detach_target: bool = False):
        super().__init__()
        if reduction not in KL_REDUCTIONS:
            raise ValueError(f"ScaleConsistencyKL: reduction={reduction!r}, expected one of {KL_REDUCTIONS}")
        if kind not in ("auto", "binary", "categorical"):
            raise ValueError(f"ScaleConsistencyKL: kind={kind!r}, expected 'auto', 'binary' or 'categorical'")
        self.reduction = reduction
        self.kind = kind
        self.detach_target = bool(detach_target)

    def log_probs(self, logits: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """(S, B, K) log-probabilities of each scale (K = 2 for binary logits)."""
        z = logits if isinstance(logits, torch.Tensor) else torch.stack(list(logits))
        if z.dim() == 3 and z.shape[-1] == 1 and self.kind != "categorical":
            z = z[..., 0]
        binary = self.kind == "binary" or (self.kind == "auto" and z.dim() == 2)
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        if binary:
            if z.dim() != 2:
                raise ValueError(f"ScaleConsistencyKL: binary logits must be (S, B), got {tuple(z.shape)}")
            return torch.stack([F.logsigmoid(-z), F.logsigmoid(z)], dim=-1)
        if z.dim() != 3 or z.shape[-1] < 2:
            raise ValueError(f"ScaleConsistencyKL: categorical logits must be (S, B, K>=2), got {tuple(z.shape)}")
        return F.log_softmax(z, dim=-1)

    def forward(self, logits: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        log_p = self.log_probs(logits)
        num_scales = log_p.shape[0]
        log_mean = torch.logsumexp(log_p, dim=0) - math.log(num_scales)
        if self.detach_target:
            log_mean = log_mean.detach()
        kl = (log_p.exp() * (log_p - log_mean)).sum(-1)  # (S, B)
        if self.reduction == "none":
            return kl
        if self.reduction == "sum":
            return kl.sum()
        return kl.mean()

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, kind={self.kind!r}, detach_target={self.detach_target}"


# ------------------------------------------------------------------------------ the MSR module


@dataclass
class MSROutput:
    """What :class:`MultiScaleStyleRetrospection` returns (B input images, S scales, D features).

    Attributes:
        scales: the S scale factors.
        descriptors: S tensors (B, D): each image's descriptor at each scale (crops/tiles of an
            image averaged). A head applied to each gives the per-scale predictions that
            :class:`ScaleConsistencyKL` compares.
        fused: (B, D) the descriptors fused across scales with ``scale_weights``.
        scale_weights: (S,) the fusion weights (sum to 1).
        features: ``features[s][g]`` (n_g, C_f, h, w) backbone feature maps of view group g at
            scale s (for evidence maps).
        backbone_inputs: ``backbone_inputs[s][g]`` what the backbone saw (e.g. the residual).
        image_index: ``image_index[s][g]`` (n_g,) the input image of each view.
        boxes: ``boxes[s][g]`` (n_g, 4) ``(top, left, height, width)`` of each view in its scaled
            image.
        scaled_sizes: ``scaled_sizes[s][i]`` (h, w) of image i at scale s.
        style: ``style[s][g]`` the :class:`StyleStats` of each group, or ``None`` when the style
            statistics stage is off.
    """

    scales: tuple[float, ...]
    descriptors: list[torch.Tensor]
    fused: torch.Tensor
    scale_weights: torch.Tensor
    features: list[list[torch.Tensor]]
    backbone_inputs: list[list[torch.Tensor]]
    image_index: list[list[torch.Tensor]]
    boxes: list[list[torch.Tensor]]
    scaled_sizes: list[list[tuple[int, int]]]
    style: list[list[StyleStats]] | None

    def stacked(self) -> torch.Tensor:
        """(S, B, D) per-scale descriptors."""
        return torch.stack(self.descriptors)


BACKBONE_INPUTS = ("residual", "image", "both")
FUSIONS = ("mean", "learned")


class _Default:
    """Marks an MSR stage argument that was not given (build the stage with its own defaults)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()


class MultiScaleStyleRetrospection(nn.Module):
    """Rescale → line enhancement → retrospection → residual → shared backbone → style statistics
    → per-scale descriptors fused across scales. See the module docstring for the data flow and
    :class:`MSROutput` for what comes out.

    Args:
        backbone: module mapping (N, C_in, h, w) → feature maps (N, C_f, h', w'), shared by all
            scales (C_in = C, or 2C for ``backbone_input="both"``). It must accept every view
            size it is given (fully convolutional, or use ``output="crops"``).
        retrospector: callable (N, C, h, w) → reconstruction of the same shape, or ``None`` to
            switch retrospection off (then ``backbone_input`` must be ``"image"``).
        rescale: the :class:`NoisyRescale` stage (default ``NoisyRescale()``); ``None`` switches
            rescaling and dither off (one view per image, scale 1: :meth:`NoisyRescale.single_scale`).
        line_enhancement: the :class:`LineEnhancement` stage (default ``LineEnhancement()``);
            ``None`` switches it off.
        style_statistics: the :class:`StyleStatistics` stage (default ``StyleStatistics()``);
            ``None`` replaces it by global average pooling.
        backbone_input: ``"residual"`` (|x̃ − x̂|, as DIRE), ``"image"`` (x̃) or ``"both"``
            (channel concatenation [x̃, |x̃ − x̂|]).
        pixel_residual_levels: grid levels of the multi-level moments of the pixel residual
            |x̃ − x̂| (mean and log-std per channel and cell, fused op, never materialised twice)
            appended to each descriptor, e.g. ``(1, 2, 4)``; ``None`` (default) = off. Needs a
            retrospector.
        fusion: ``"mean"`` (equal weights) or ``"learned"`` (softmax of S learned logits).
        eps: variance floor of the pixel-residual log-std.
        impl: implementation of the fused ops.
    """

    def __init__(
        self,
        backbone: nn.Module,
        retrospector: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        rescale: NoisyRescale | None | _Default = DEFAULT,
        line_enhancement: LineEnhancement | None | _Default = DEFAULT,
        style_statistics: StyleStatistics | None | _Default = DEFAULT,
        backbone_input: str = "residual",
        pixel_residual_levels: Sequence[int] | None = None,
        fusion: str = "mean",
        eps: float = 1e-5,
        impl: str = "auto",
    ):
        super().__init__()
        if backbone_input not in BACKBONE_INPUTS:
            raise ValueError(
                f"MultiScaleStyleRetrospection: backbone_input={backbone_input!r}, expected one of {BACKBONE_INPUTS}"
            )
        if retrospector is None and (backbone_input != "image" or pixel_residual_levels is not None):
            raise ValueError(
                "MultiScaleStyleRetrospection: without a retrospector there is no residual; use "
                "backbone_input='image' and pixel_residual_levels=None (or pass a retrospector)"
            )
        if fusion not in FUSIONS:
            raise ValueError(f"MultiScaleStyleRetrospection: fusion={fusion!r}, expected one of {FUSIONS}")
        for name, stage, cls in (("rescale", rescale, NoisyRescale), ("line_enhancement", line_enhancement,
                                 LineEnhancement), ("style_statistics", style_statistics, StyleStatistics)):
            if stage is not DEFAULT and stage is not None and not isinstance(stage, cls):
                raise TypeError(f"MultiScaleStyleRetrospection: {name} must be a {cls.__name__} or None, "
                                f"got {type(stage).__name__}")
        self.backbone = backbone
        self.retrospector = retrospector
        self.rescale = (NoisyRescale() if rescale is DEFAULT else
                        NoisyRescale.single_scale() if rescale is None else rescale)
        self.line_enhancement = LineEnhancement() if line_enhancement is DEFAULT else line_enhancement
        self.style_statistics = StyleStatistics() if style_statistics is DEFAULT else style_statistics
        self.pixel_residual_levels = (
            None if pixel_residual_levels is None
            else check_levels(pixel_residual_levels, "MultiScaleStyleRetrospection.pixel_residual_levels")
        )
        self.backbone_input = backbone_input
        self.fusion = fusion
        self.impl = impl
        self.eps = float(eps)
        num_scales = len(self.rescale.scales)
        self.fusion_logits = nn.Parameter(torch.zeros(num_scales)) if fusion == "learned" else None

    @property
    def pixel_residual_stats(self) -> bool:
        return self.pixel_residual_levels is not None

    #: keep every view's backbone input, feature maps and style statistics in :class:`MSROutput`
    #: (for evidence maps and figures); ``False`` leaves those lists empty, so a large image's
    #: intermediates are freed scale by scale (what ``HRRDetector.predict`` does without maps)
    keep_intermediates: bool = True

    #: in eval mode, the backbone takes at most this many pixels per call (views x height x width):
    #: a larger group of views goes in several calls (the same features; BatchNorm uses its running
    #: statistics in eval mode), a single larger view alone — in overlapping tiles of about
    #: ``(√budget + 2·reach)²`` pixels when the backbone declares ``spatial_reach() -> (stride, reach)``
    #: (a fully convolutional network; the same features, :func:`~hrrkit.utils.tiling.map_spatial_tiles`)
    #: and such a tile is smaller than the view; ``None``: the whole group at once
    backbone_call_pixels: int | None = DEFAULT_CALL_PIXELS

    @property
    def scales(self) -> tuple[float, ...]:
        return self.rescale.scales

    def scale_weights(self, device=None) -> torch.Tensor:
        """(S,) fusion weights."""
        if self.fusion_logits is not None:
            return torch.softmax(self.fusion_logits, 0)
        n = len(self.scales)
        return torch.full((n,), 1.0 / n, device=device)

    def _view_descriptor(self, views: torch.Tensor):
        with profile_stage("rescale"):
            enhanced = self.line_enhancement(views) if self.line_enhancement is not None else views
        recon = None
        if self.retrospector is not None:
            with profile_stage("retrospection"):
                recon = self.retrospector(enhanced)
        if recon is not None and recon.shape != enhanced.shape:
            raise ValueError(
                f"MultiScaleStyleRetrospection: the retrospector returned {tuple(recon.shape)} for "
                f"{tuple(enhanced.shape)}; it must keep the shape"
            )
        return self._describe(enhanced, recon)

    def _describe(self, enhanced: torch.Tensor, recon: torch.Tensor | None):
        """Residual → backbone → statistics of views x̃ and their reconstructions x̂ (the part of MSR
        after the retrospector; the cached path of :mod:`hrrkit.retrospect.views` starts here)."""
        with profile_stage("backbone"):
            return self._describe_views(enhanced, recon)

    def _describe_views(self, enhanced: torch.Tensor, recon: torch.Tensor | None):
        if self.backbone_input == "image":
            inp = enhanced
        else:
            residual = (enhanced - recon).abs()
            inp = residual if self.backbone_input == "residual" else torch.cat([enhanced, residual], dim=1)
        feats = self._backbone_in_calls(inp)
        if not isinstance(feats, torch.Tensor) or feats.dim() != 4:
            raise ValueError("MultiScaleStyleRetrospection: the backbone must return (N, C, H, W) feature maps")
        if self.style_statistics is not None:
            stats = self.style_statistics(feats)
            desc = stats.descriptor
        else:
            stats = None
            desc = feats.mean(dim=(2, 3))
        if self.pixel_residual_stats:
            mean, var = residual_multilevel_moments(enhanced, recon, self.pixel_residual_levels, self.impl)
            pix = torch.cat([mean, 0.5 * torch.log(var + self.eps)], dim=-1).flatten(1)
            desc = torch.cat([desc, pix.to(desc.dtype)], dim=1)
        return inp, feats, stats, desc

    def _backbone_in_calls(self, inp: torch.Tensor):
        budget = self.backbone_call_pixels
        if self.training or budget is None:
            return self.backbone(inp)
        height, width = inp.shape[-2:]
        geometry = getattr(self.backbone, "spatial_reach", None)
        if height * width > budget and callable(geometry):
            stride, reach = geometry()
            core = max(stride, math.isqrt(budget) // stride * stride)
            tile = core + 2 * (-(-reach // stride) * stride) + stride
            if height * width > tile * tile:  # tiles pay off (each sees its halo twice)
                return torch.cat([map_spatial_tiles(self.backbone, view, core, reach, stride)
                                  for view in inp.split(1)])
        per_call = max(1, budget // max(1, height * width))
        if inp.shape[0] <= per_call:
            return self.backbone(inp)
        parts = [self.backbone(part) for part in inp.split(per_call)]
        if not all(isinstance(p, torch.Tensor) for p in parts):
            return parts[0]  # not a tensor: let the shape check below report it
        return torch.cat(parts)

    def forward(self, images: ImageBatch) -> MSROutput:
        """Args: images (B, C, H, W) or a list of B (C, H, W) tensors of any sizes, or a
        :class:`~hrrkit.retrospect.views.RetrospectedViews` of cached (x̃_s, x̂_s) pairs (rescale,
        line enhancement and retrospection already done: they are skipped), or the
        :class:`ScaledViews` of ``self.rescale(images)`` (so a caller can free the full-size images
        before the rest runs).

        Returns: :class:`MSROutput`."""
        cached = hasattr(images, "reconstruction") and hasattr(images, "enhanced")  # RetrospectedViews
        if cached or isinstance(images, ScaledViews):
            if tuple(images.scales) != tuple(self.scales):
                raise ValueError(f"MultiScaleStyleRetrospection: given views have scales {images.scales}, "
                                 f"this module {self.scales}")
            views = images
        else:
            with profile_stage("rescale"):
                views = self.rescale(images)
        num_images = views.num_images
        descriptors, features, inputs, styles = [], [], [], []
        for s in range(len(views.scales)):
            sums, counts = None, None
            s_feats, s_inputs, s_styles = [], [], []
            groups = (zip(views.enhanced[s], views.reconstruction[s]) if cached
                      else ((g, None) for g in views.groups[s]))
            for (group, recon), idx in zip(groups, views.image_index[s]):
                if cached:
                    inp, feats, stats, desc = self._describe(group, recon if self.retrospector is not None else None)
                else:
                    inp, feats, stats, desc = self._view_descriptor(group)
                if sums is None:
                    sums = desc.new_zeros(num_images, desc.shape[1])
                    counts = desc.new_zeros(num_images)
                sums = sums.index_add(0, idx, desc)
                counts = counts.index_add(0, idx, torch.ones_like(idx, dtype=desc.dtype))
                if self.keep_intermediates:
                    s_feats.append(feats)
                    s_inputs.append(inp)
                    s_styles.append(stats)
                del inp, feats, stats
            if not cached and not self.keep_intermediates:
                views.groups[s] = []  # this scale's views are done; free them before the next scale
            descriptors.append(sums / counts[:, None])
            features.append(s_feats)
            inputs.append(s_inputs)
            styles.append(s_styles)
        if len({d.shape[1] for d in descriptors}) > 1:
            raise ValueError("MultiScaleStyleRetrospection: descriptor sizes differ between scales")
        weights = self.scale_weights(descriptors[0].device).to(descriptors[0].dtype)
        fused = torch.einsum("s,sbd->bd", weights, torch.stack(descriptors))
        return MSROutput(
            scales=views.scales,
            descriptors=descriptors,
            fused=fused,
            scale_weights=weights,
            features=features,
            backbone_inputs=inputs,
            image_index=views.image_index,
            boxes=views.boxes,
            scaled_sizes=views.scaled_sizes,
            style=styles if self.style_statistics is not None else None,
        )

    def descriptor_dim(self, backbone_channels: int, image_channels: int = 3) -> int:
        """D of the descriptors for a backbone with ``backbone_channels`` output channels."""
        d = self.style_statistics.descriptor_dim(backbone_channels) if self.style_statistics else backbone_channels
        if self.pixel_residual_stats:
            d += 2 * image_channels * num_cells(self.pixel_residual_levels)
        return d

    def extra_repr(self) -> str:
        return (
            f"backbone_input={self.backbone_input!r}, fusion={self.fusion!r}, "
            f"retrospector={'off' if self.retrospector is None else type(self.retrospector).__name__}, "
            f"pixel_residual_stats={self.pixel_residual_stats}"
        )
