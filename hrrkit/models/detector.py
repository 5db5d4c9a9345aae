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

import torch
from PIL import Image
from torch import nn

from hrrkit.models.backbones import build_backbone
from hrrkit.models.checkpoint import CheckpointError, load_detector_state, read_detector_folder
from hrrkit.models.config import ConfigError, DetectorConfig
from hrrkit.models.hub import HubMixin
from hrrkit.nn import DetectorHead, MultiScaleStyleRetrospection, ScaleConsistencyKL
from hrrkit.retrospect.registry import build_retrospector
from hrrkit.utils.memory import release_freed_memory
from hrrkit.utils.profile import stage


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
        with stage("head"):
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

    def _as_pil(self, image: Image.Image | str | os.PathLike | torch.Tensor) -> Image.Image:
        """A PIL RGB image from a PIL image, a path (read with the config's pixel limit) or a
        ``(3, H, W)`` tensor in [-1, 1]."""
        from hrrkit.data.io import load_image

        if isinstance(image, torch.Tensor):
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(f"predict: a tensor image must be (3, H, W) in [-1, 1], got {tuple(image.shape)}")
            array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
            image = Image.fromarray(array)
        elif not isinstance(image, Image.Image):
            image = load_image(image, max_pixels=self.config.input.max_pixels)
        return image if image.mode == "RGB" else image.convert("RGB")

    def preprocess(self, image: Image.Image | str | os.PathLike | torch.Tensor) -> torch.Tensor:
        """One image → ``(T, 3, s, s)`` views under the config's evaluation input policy (T = 1 for
        crops, the tiles for ``tiles``; ``native`` keeps the whole image, ``(1, 3, H, W)``)."""
        from hrrkit.data.dataset import apply_input_policy

        inp = self.config.input
        out = apply_input_policy(self._as_pil(image), inp.eval_policy, inp.crop_size, inp.max_tiles)
        return out if out.dim() == 4 else out[None]

    def predict(
        self, images: list[Any], *, threshold: float | None = None, with_maps: bool = False
    ) -> list[dict[str, Any]]:
        """Score images (PIL images, paths or ``(3, H, W)`` tensors in [-1, 1]).

        Returns one dict per image:

        * ``score`` — probability of generated: sigmoid of the head applied to the descriptor fused
          across scales (tiles averaged in logit space);
        * ``label`` — ``"generated"`` (score ≥ ``threshold``, default the config's) or ``"real"``;
          with a calibrated ``config.unsure`` band ``(low, high)`` and no explicit ``threshold``,
          ``"real"`` below ``low``, ``"generated"`` at or above ``high``, ``"unsure"`` between;
        * ``scale_scores`` — ``{scale: sigmoid(head(descriptor of that scale alone))}``: what the
          scale-consistency KL compares in training. The head is non-linear, so ``score`` is not their
          mean and can lie outside their range;
        * ``notes`` — plain-language warnings (scales that collapsed to one view, a tiny image);
        * with ``with_maps``: ``maps`` (``{scale: (h, w) float32}`` per-location contribution to the
          logit, see :mod:`hrrkit.models.evidence`) and ``canvas`` (the ``(H, W, 3)`` uint8 image the
          maps lie on).
        """
        from hrrkit.eval.predict import image_probabilities

        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        with stage("decode"):
            pil = [self._as_pil(img) for img in images]
            views = [self.preprocess(img) for img in pil]
        owners = torch.cat([torch.full((v.shape[0],), i) for i, v in enumerate(views)])
        sizes = [img.size for img in pil]
        if not with_maps:
            pil = []  # only the evidence maps draw on the decoded images
        # a list, not torch.cat: MSR groups the views by size itself, and a concatenated copy of large
        # photos would double the input's memory
        batch = [t.to(device) for v in views for t in v]
        del views
        try:
            with stage("rescale"):
                scaled = self.msr.rescale(batch)
            del batch  # the full-size images: only their scaled views are needed from here on
            release_freed_memory()
            if with_maps:
                with torch.enable_grad():
                    out = self(scaled)
                    feats = [f for group in out.msr.features for f in group]
                    with stage("evidence"):
                        flat = torch.autograd.grad(out.logits.sum(), feats, allow_unused=True) if any(
                            f.requires_grad for f in feats) else [None] * len(feats)
                grads, k = [], 0
                for group in out.msr.features:
                    grads.append(list(flat[k : k + len(group)]))
                    k += len(group)
            else:
                self.msr.keep_intermediates = False  # nothing reads them: free each scale's as it is done
                with torch.no_grad():
                    out = self(scaled)
        finally:
            self.msr.keep_intermediates = True
            self.train(was_training)
        n = len(images)
        scores = image_probabilities(out.logits, owners, n).cpu().tolist()
        scale_scores = [image_probabilities(sl, owners, n).cpu().tolist() for sl in out.scale_logits]
        notes = self._scale_notes(out.msr, owners, sizes)
        if with_maps:
            from hrrkit.models.evidence import contribution_maps, view_layout

            inp = self.config.input
            with stage("evidence"):
                layouts = [view_layout(img, inp.eval_policy, inp.crop_size, inp.max_tiles) for img in pil]
                maps = contribution_maps(out.msr, grads, owners, layouts)
        results = []
        for i in range(n):
            r = {
                "score": scores[i], "label": self.label_for(scores[i], threshold),
                "scale_scores": {f"{s:g}": scale_scores[k][i] for k, s in enumerate(out.msr.scales)},
                "notes": notes[i],
            }
            if with_maps:
                r["maps"] = maps[i]
                r["canvas"] = layouts[i].canvas
            results.append(r)
        return results

    def view_pixels(self, width: int, height: int) -> int:
        """Pixels the detector processes for a ``width x height`` image: the views of its evaluation
        input policy at every scale (what memory grows with; :func:`hrrkit.eval.predict.detect_files`
        batches by this)."""
        from hrrkit.data.dataset import tile_windows

        inp, rescale = self.config.input, self.msr.rescale
        if inp.eval_policy == "native":
            views = [(height, width)]
        elif inp.eval_policy == "tiles":
            c = inp.crop_size
            views = [(c, c)] * len(tile_windows(max(height, c), max(width, c), c, inp.max_tiles))
        else:
            views = [(inp.crop_size, inp.crop_size)]
        total = 0
        for vh, vw in views:
            for scale in rescale.scales:
                sh, sw = rescale.scaled_size(vh, vw, scale)
                total += sh * sw
        return total

    def label_for(self, score: float, threshold: float | None = None) -> str:
        """``"generated"``/``"real"`` at ``threshold``; without one, the config's ``unsure`` band when it
        is set (``"unsure"`` inside it), else the config's threshold."""
        if threshold is None and self.config.unsure is not None:
            low, high = self.config.unsure
            return "real" if score < low else "generated" if score >= high else "unsure"
        threshold = self.config.threshold if threshold is None else threshold
        return "generated" if score >= threshold else "real"

    def _scale_notes(self, msr, owners: torch.Tensor, sizes: list[tuple[int, int]]) -> list[list[str]]:
        """Per image, warnings a user should read next to the score: scales that give one and the same
        view (the size cap or floor), and images too small to carry much evidence."""
        notes: list[list[str]] = [[] for _ in sizes]
        first_view = {}
        for v, i in enumerate(owners.tolist()):
            first_view.setdefault(i, v)
        rescale = self.msr.rescale
        for i, (w, h) in enumerate(sizes):
            v = first_view[i]
            by_size: dict[tuple[int, int], list[str]] = {}
            for s, scale in enumerate(msr.scales):
                by_size.setdefault(tuple(msr.scaled_sizes[s][v]), []).append(f"{scale:g}")
            for (vh, vw), names in by_size.items():
                if len(names) > 1:
                    why = (f"the {rescale.max_side}-px cap on the longer side" if max(vh, vw) >= rescale.max_side
                           else f"the {rescale.min_side}-px floor on the shorter side")
                    notes[i].append(f"scales {', '.join(names)} give the same {vw}x{vh} view ({why}): their "
                                    "scores are not independent evidence")
            if min(w, h) < 8:
                notes[i].append(f"{w}x{h} image: too small for the detector to see texture; the score is "
                                "close to a guess")
        return notes

def load_detector(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> HRRDetector:
    """Load a detector folder written by :func:`hrrkit.models.checkpoint.save_detector` (safetensors
    weights + JSON config; nothing is unpickled)."""
    payload, weights = read_detector_folder(path)
    try:
        config = DetectorConfig.from_dict(payload["config"], where=f"{Path(path) / 'config.json'}: detector")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    model = HRRDetector(config, retrospector_device=device)
    load_detector_state(model, weights, payload.get("packaged_weights") or {}, path)
    return model.to(device).eval()
