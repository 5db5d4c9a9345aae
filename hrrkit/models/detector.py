"""``HRRDetector``: MSR (rescale → line enhancement → retrospection → residual → shared backbone →
style statistics) → head, built from a :class:`~hrrkit.models.config.DetectorConfig`.

Baselines and ablations are presets of the same class (:mod:`hrrkit.models.presets`), so they are
trained and evaluated the same way.
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
from hrrkit.nn import DetectorHead, MultiScaleStyleRetrospection, ScaleConsistencyKL
from hrrkit.retrospect.registry import build_retrospector


@dataclass
class DetectorOutput:
    """``logits`` (B,) of the fused descriptor (positive = generated); ``scale_logits`` (S, B) the
    head applied to each scale's descriptor; ``msr`` the full :class:`~hrrkit.nn.msr.MSROutput`."""

    logits: torch.Tensor
    scale_logits: torch.Tensor
    msr: Any


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
            backbone, retrospector, rescale=config.rescale.build(), line_enhancement=config.line.build(),
            style_statistics=style.build(), backbone_input=backbone_input,
            pixel_residual_levels=style.levels if style.pixel_residual_stats and retrospector is not None else None,
            fusion=config.rescale.fusion,
        )
        dim = self.msr.descriptor_dim(backbone.out_channels, 3)
        self.head: DetectorHead = config.head.build(dim, config.loss)
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
        head_loss = self.head.loss(output.logits, labels)
        total, parts = head_loss.total, head_loss.as_floats()
        if self.config.loss.scale_kl > 0 and output.scale_logits.shape[0] > 1:
            kl = self.scale_kl(output.scale_logits)
            total = total + self.config.loss.scale_kl * kl
            parts["scale_kl"] = kl.item()
        parts["loss"] = total.item()
        return total, parts

    def after_optimizer_step(self, lr: float) -> None:
        """The head's proximal step (the AFR group soft-threshold; a no-op for other heads)."""
        self.head.proximal_step(lr)

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay: those the head names (the additive coefficients)."""
        return {f"head.{name}" for name in self.head.no_weight_decay()}

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

        from hrrkit.eval.predict import image_probabilities

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
