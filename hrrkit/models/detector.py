"""``HRRDetector``: MSR (rescale → line enhancement → retrospection → residual → shared backbone →
style statistics) → AFR head, built from a :class:`~hrrkit.models.config.DetectorConfig`.

Baselines and ablations are presets of the same class (:func:`preset_config`), so they are trained
and evaluated the same way:

* ``hrr`` — the full detector: scales (0.5, 1, 2), line enhancement, style statistics, AFR head,
  scale-consistency KL.
* ``dire`` — DIRE-style: the residual of one scale, backbone, global average pooling, linear head.
* ``hrr_no_msr`` — HRR without MSR: one scale, no line enhancement, no style statistics, AFR head.
* ``hrr_no_afr`` — HRR without AFR: MSR with a linear head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from hrrkit.models.backbones import build_backbone
from hrrkit.models.checkpoint import CheckpointError, read_detector_folder
from hrrkit.models.config import ConfigError, DetectorConfig
from hrrkit.models.hub import HubMixin
from hrrkit.models.retrospectors import build_retrospector
from hrrkit.nn import AdditiveRefinementHead, MultiScaleStyleRetrospection, ScaleConsistencyKL
from hrrkit.nn.losses import CorrentropyLoss

PRESETS = ("hrr", "dire", "hrr_no_msr", "hrr_no_afr")


def preset_config(name: str) -> DetectorConfig:
    """The config of a named detector (see the module docstring)."""
    base = DetectorConfig(name=name)
    if name == "hrr":
        return base
    if name == "dire":
        return base.replace(**{
            "rescale.enabled": False, "line.enabled": False, "style.enabled": False,
            "style.pixel_residual_stats": False, "head.kind": "linear", "loss.correntropy": 0.0,
            "loss.scale_kl": 0.0, "loss.sparsity": 0.0,
        })
    if name == "hrr_no_msr":
        return base.replace(**{
            "rescale.enabled": False, "line.enabled": False, "style.enabled": False,
            "style.pixel_residual_stats": False, "loss.scale_kl": 0.0,
        })
    if name == "hrr_no_afr":
        return base.replace(**{"head.kind": "linear", "loss.correntropy": 0.0, "loss.sparsity": 0.0})
    raise ConfigError(f"unknown detector preset {name!r}; choose one of {PRESETS}")


def image_probabilities(logits: torch.Tensor, owner: torch.Tensor | None, num_images: int) -> torch.Tensor:
    """(num_images,) probability of generated from per-view logits: the views (crops, tiles) of one
    image are averaged in logit space; ``owner[v]`` is the image of view v (``None``: one view each)."""
    logits = logits.detach().float().reshape(-1)
    if owner is None:
        return torch.sigmoid(logits)
    owner = owner.to(logits.device)
    sums = torch.zeros(num_images, device=logits.device).index_add_(0, owner, logits)
    counts = torch.bincount(owner, minlength=num_images).to(logits.device).float()
    return torch.sigmoid(sums / counts)


@dataclass
class DetectorOutput:
    """``logits`` (B,) of the fused descriptor (positive = generated); ``scale_logits`` (S, B) the
    head applied to each scale's descriptor; ``msr`` the full :class:`~hrrkit.nn.msr.MSROutput`."""

    logits: torch.Tensor
    scale_logits: torch.Tensor
    msr: Any


class LinearHead(nn.Module):
    """Batch-normalised linear logit with BCE (+ optional correntropy) loss: the baselines' head."""

    def __init__(self, in_features: int, bce_weight: float = 1.0, correntropy_weight: float = 0.0,
                 correntropy_sigma: float = 1.0):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_features, affine=False)
        self.linear = nn.Linear(in_features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.bce_weight, self.correntropy_weight = float(bce_weight), float(correntropy_weight)
        self.correntropy = CorrentropyLoss(sigma=correntropy_sigma)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        shape = features.shape[:-1]
        flat = features.reshape(-1, features.shape[-1])
        if self.training and flat.shape[0] == 1:
            flat = F.batch_norm(flat, self.norm.running_mean, self.norm.running_var, training=False, eps=self.norm.eps)
        else:
            flat = self.norm(flat)
        return self.linear(flat).reshape(shape)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor):
        zero = logits.new_zeros(())
        bce = F.binary_cross_entropy_with_logits(logits, targets) if self.bce_weight else zero
        cor = self.correntropy(logits, targets) if self.correntropy_weight else zero
        total = self.bce_weight * bce + self.correntropy_weight * cor
        return total, {"bce": bce.item(), "correntropy": cor.item(), "penalty": 0.0}


class HRRDetector(HubMixin, nn.Module):
    """The HRR detector (see the module docstring); ``config`` says everything about it.

    ``forward(images)`` takes ``(B, 3, H, W)`` in [-1, 1] (or a list of ``(3, H, W)`` of any sizes)
    and returns a :class:`DetectorOutput`. ``predict(images)`` takes PIL images, paths or tensors
    and applies the config's input policy.
    """

    def __init__(self, config: DetectorConfig, *, retrospector_device: torch.device | str | None = None):
        super().__init__()
        self.config = config
        rc = config.retrospector
        try:
            retrospector = build_retrospector(rc, device=retrospector_device)
        except ConfigError:
            raise
        except (OSError, ValueError, ImportError) as exc:
            raise ConfigError(f"detector.retrospector (kind={rc.kind!r}, path={rc.path!r}): cannot build it: {exc}") from exc
        backbone_input = "image" if retrospector is None else rc.input
        if backbone_input not in ("residual", "image", "both"):
            raise ConfigError(f"detector.retrospector.input={rc.input!r}: choose residual, image or both")
        in_channels = 6 if backbone_input == "both" else 3
        try:
            backbone = build_backbone(config.backbone.name, in_channels=in_channels,
                                      pretrained_path=config.backbone.pretrained_path, **config.backbone.options)
        except (KeyError, TypeError, ValueError, ImportError, FileNotFoundError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise ConfigError(f"detector.backbone (name={config.backbone.name!r}, options={config.backbone.options}): "
                              f"{message}") from exc
        style = config.style
        self.msr = MultiScaleStyleRetrospection(
            backbone, retrospector,
            scales=config.rescale.scales if config.rescale.enabled else (1.0,),
            noise_std=config.rescale.dither_std, output="full", min_side=4,
            dither_in_eval=config.rescale.dither_in_eval, rescale=config.rescale.enabled,
            line_enhance=config.line.enabled, sigma_sharpen=config.line.sigma_sharpen,
            amount=config.line.amount, sigma_edge=config.line.sigma_edge, beta=config.line.beta,
            backbone_input=backbone_input, style_statistics=style.enabled, levels=style.levels,
            descriptor=style.descriptor,
            pixel_residual_stats=style.pixel_residual_stats and retrospector is not None,
            fusion=config.head.fuse,
        )
        dim = self.msr.descriptor_dim(backbone.out_channels, 3)
        loss = config.loss
        if config.head.kind == "additive":
            self.head: nn.Module = AdditiveRefinementHead(
                dim, num_basis=config.head.num_basis, basis=config.head.basis,
                normalization=config.head.normalization, bce_weight=loss.bce, correntropy_weight=loss.correntropy,
                correntropy_sigma=loss.correntropy_sigma, sparsity=loss.sparsity,
                penalty_mode=config.head.penalty_mode,
            )
        elif config.head.kind == "linear":
            self.head = LinearHead(dim, loss.bce, loss.correntropy, loss.correntropy_sigma)
        else:
            raise ConfigError(f"detector.head.kind={config.head.kind!r}: choose 'additive' or 'linear'")
        self.scale_kl = ScaleConsistencyKL(reduction="batchmean", kind="binary")
        self.descriptor_dim = dim

    # ------------------------------------------------------------------ training contract

    def forward(self, images: torch.Tensor | list[torch.Tensor]) -> DetectorOutput:
        msr = self.msr(images)
        logits = self.head(msr.fused)
        scale_logits = self.head(msr.stacked()) if len(msr.descriptors) > 1 else logits[None]
        return DetectorOutput(logits=logits, scale_logits=scale_logits, msr=msr)

    def compute_loss(self, output: DetectorOutput, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts: head loss (BCE, correntropy, sparsity) + λ_KL · scale KL."""
        labels = labels.to(output.logits.dtype)
        if isinstance(self.head, AdditiveRefinementHead):
            parts_t = self.head.loss(output.logits, labels)
            total = parts_t.total
            parts = {"bce": parts_t.bce.item(), "correntropy": parts_t.correntropy.item(),
                     "penalty": parts_t.penalty.item()}
        else:
            total, parts = self.head.loss(output.logits, labels)
        if self.config.loss.scale_kl > 0 and output.scale_logits.shape[0] > 1:
            kl = self.scale_kl(output.scale_logits)
            total = total + self.config.loss.scale_kl * kl
            parts["scale_kl"] = kl.item()
        parts["loss"] = total.item()
        return total, parts

    def after_optimizer_step(self, lr: float) -> None:
        if isinstance(self.head, AdditiveRefinementHead) and self.head.penalty_mode == "proximal":
            self.head.proximal_step(lr)

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay: the additive coefficients have their own penalty."""
        return {"head.afr.beta"} if isinstance(self.head, AdditiveRefinementHead) else set()

    # ------------------------------------------------------------------ inference

    def preprocess(self, image: Image.Image | str | os.PathLike | torch.Tensor) -> torch.Tensor:
        """One image → ``(T, 3, s, s)`` views under the config's evaluation input policy (T = 1 for
        crops, the tiles for ``tiles``; ``native`` keeps the whole image, ``(1, 3, H, W)``)."""
        from hrrkit.data.dataset import apply_input_policy
        from hrrkit.data.io import load_image

        inp = self.config.input
        if isinstance(image, torch.Tensor):
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(f"predict: a tensor image must be (3, H, W) in [-1, 1], got {tuple(image.shape)}")
            array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
            image = Image.fromarray(array)
        elif not isinstance(image, Image.Image):
            image = load_image(image, max_pixels=inp.max_pixels)
        if image.mode != "RGB":
            image = image.convert("RGB")
        out = apply_input_policy(image, inp.eval_policy, inp.crop_size, inp.max_tiles)
        return out if out.dim() == 4 else out[None]

    @torch.no_grad()
    def predict(
        self, images: list[Any], *, threshold: float | None = None, with_maps: bool = False
    ) -> list[dict[str, Any]]:
        """Score images (PIL images, paths or ``(3, H, W)`` tensors in [-1, 1]).

        Returns one dict per image: ``score`` (probability of generated), ``label``
        (``"generated"`` or ``"real"`` at ``threshold``, default the config's), ``scale_scores``
        (per scale, ``{scale: score}``) and, with ``with_maps``, ``maps`` (per scale an (h, w)
        numpy evidence map: the backbone features' energy, averaged over the image's views).
        """
        was_training = self.training
        self.eval()
        threshold = self.config.threshold if threshold is None else threshold
        device = next(self.parameters()).device
        views = [self.preprocess(img) for img in images]
        owners = torch.cat([torch.full((v.shape[0],), i) for i, v in enumerate(views)])
        same = len({tuple(v.shape[1:]) for v in views}) == 1
        batch: torch.Tensor | list[torch.Tensor] = torch.cat(views).to(device) if same else [
            t.to(device) for v in views for t in v]
        out = self(batch)
        n = len(images)

        scores = image_probabilities(out.logits, owners, n).cpu().tolist()
        scale_scores = [image_probabilities(sl, owners, n).cpu().tolist() for sl in out.scale_logits]
        results = []
        for i in range(n):
            r = {
                "score": scores[i], "label": "generated" if scores[i] >= threshold else "real",
                "scale_scores": {f"{s:g}": scale_scores[k][i] for k, s in enumerate(out.msr.scales)},
            }
            if with_maps:
                r["maps"] = self._evidence_maps(out.msr, owners, i)
            results.append(r)
        self.train(was_training)
        return results

    def _evidence_maps(self, msr, owners: torch.Tensor, image: int) -> dict[str, np.ndarray]:
        """Per scale, the mean over views of the feature energy ‖F(x)‖² per location, normalised to [0, 1]."""
        maps = {}
        for k, scale in enumerate(msr.scales):
            acc = None
            for feats, idx in zip(msr.features[k], msr.image_index[k]):
                view_owner = owners.to(idx.device)[idx]
                sel = (view_owner == image).nonzero().flatten()
                if sel.numel() == 0:
                    continue
                energy = feats[sel].float().pow(2).mean(1).mean(0)
                acc = energy if acc is None else acc + F.interpolate(energy[None, None], size=acc.shape)[0, 0]
            if acc is not None:
                acc = acc - acc.min()
                acc = acc / acc.max().clamp_min(1e-12)
                maps[f"{scale:g}"] = acc.cpu().numpy()
        return maps

    @staticmethod
    def save_evidence_maps(prediction: dict[str, Any], folder: str | os.PathLike, stem: str) -> list[str]:
        """Write ``prediction["maps"]`` as PNGs ``<stem>_scale<s>.png`` (nearest upsampling to ≥ 64 px)."""
        from hrrkit.utils.atomic import atomic_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for scale, m in prediction.get("maps", {}).items():
            img = Image.fromarray((np.clip(m, 0, 1) * 255).astype(np.uint8), mode="L")
            factor = max(1, 64 // max(1, min(img.size)))
            img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
            path = folder / f"{stem}_scale{scale}.png"
            with atomic_path(path) as tmp:
                img.save(tmp, format="PNG")
            written.append(str(path))
        return written


def load_detector(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> HRRDetector:
    """Load a detector folder written by :func:`hrrkit.models.checkpoint.save_detector` (safetensors
    weights + JSON config; nothing is unpickled)."""
    payload, weights = read_detector_folder(path)
    try:
        config = DetectorConfig.from_dict(payload["config"], where=f"{Path(path) / 'config.json'}: detector")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    model = HRRDetector(config, retrospector_device=device)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.to(device).eval()
