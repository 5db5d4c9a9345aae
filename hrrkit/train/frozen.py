"""Fit a detector's head on the descriptors of its frozen front end (seconds instead of hours).

When the backbone is frozen and the evaluation view policy is deterministic, everything before the head
— rescaling, line enhancement, retrospection, backbone, style statistics — is a fixed function of the
image. :func:`describe` runs that front end once per image and *copy* (copy 0 is the file as it is;
copies 1..k pass through a seeded augmentation such as ``delivery`` first) and keeps the per-scale
descriptors ``(S, D)``; :func:`fit_head` then trains only the head, full batch, with the detector's
own loss (BCE + correntropy + group sparsity through the head, plus the scale-consistency KL across
the per-scale logits) and keeps the epoch with the best validation AUC.

The result is an ordinary :class:`~hrrkit.models.detector.HRRDetector` (front end unchanged, head
trained): it saves, loads and scores like any other. Descriptors can be cached on disk, keyed by the
image bytes' SHA-256, the copy, the augmentation, the seed and a fingerprint of the front end's config
and weights, so a sweep over head settings, or a second run, reads them back.
"""

from __future__ import annotations

import copy as copy_module
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hrrkit.data.dataset import AUGMENTATION_PRESETS
from hrrkit.data.io import load_image
from hrrkit.eval.metrics import average_precision, roc_auc

__all__ = ["DEFAULT_LR", "Descriptors", "FrozenFitConfig", "FrozenFitResult", "describe", "describe_together",
           "front_end_fingerprint", "fit_head"]


#: Full-batch AdamW learning rate per head kind when :class:`FrozenFitConfig` names none: the linear head
#: reached its best validation AUC at 3e-3 within 100 epochs; the additive (AFR) head starts from zero
#: coefficients and was still improving at 3e-3 (val AUC 0.77 after 40 epochs, 0.83 at 3e-2).
DEFAULT_LR: dict[str, float] = {"linear": 3e-3, "additive": 3e-2}


@dataclass
class FrozenFitConfig:
    """How :func:`fit_head` trains a head on cached descriptors.

    ``copies``: augmented copies per training image besides the untouched file; ``augment``: the
    augmentation preset of those copies (a name of :data:`hrrkit.data.dataset.AUGMENTATION_PRESETS`);
    ``epochs``: full-batch steps; ``lr``/``weight_decay``: AdamW (the head's additive coefficients get
    no weight decay: they have their own group penalty; ``lr=None`` takes :data:`DEFAULT_LR` of the head's
    kind, each chosen on wild v2's validation split); ``balance``: weight the classes (and the
    sample ``weights`` given) so both classes weigh the same; ``seed``: head initialisation and
    augmentation draws."""

    copies: int = 2
    augment: str = "delivery"
    epochs: int = 100
    lr: float | None = None
    weight_decay: float = 1e-4
    balance: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.copies < 0 or self.epochs < 1 or (self.lr is not None and not self.lr > 0) or self.weight_decay < 0:
            raise ValueError(f"FrozenFitConfig: copies >= 0, epochs >= 1, lr > 0, weight_decay >= 0; got {self}")
        if self.copies and self.augment not in AUGMENTATION_PRESETS:
            raise ValueError(f"FrozenFitConfig.augment={self.augment!r}: choose one of {sorted(AUGMENTATION_PRESETS)}")


@dataclass
class Descriptors:
    """Per-scale descriptors of images: ``values`` ``(N, S, D)`` float32, with ``labels`` ``(N,)``
    (0 real, 1 generated), ``weights`` ``(N,)`` sample weights and ``paths`` (one per row; a path
    repeats once per copy)."""

    values: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    paths: list[str]

    def __len__(self) -> int:
        return self.values.shape[0]

    @staticmethod
    def concat(parts: Sequence[Descriptors]) -> Descriptors:
        return Descriptors(torch.cat([p.values for p in parts]), torch.cat([p.labels for p in parts]),
                           torch.cat([p.weights for p in parts]), [q for p in parts for q in p.paths])


@dataclass
class FrozenFitResult:
    """What :func:`fit_head` did: ``best_epoch`` (1-based), validation AUC/AP at that epoch, and the
    per-epoch ``history`` (``epoch``, ``loss``, ``val_auc``, ``val_ap`` every ``eval_every`` epochs)."""

    best_epoch: int
    val_auc: float
    val_ap: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- descriptors


def front_end_fingerprint(detector) -> str:
    """SHA-256 (hex, 16 chars) of everything before the head: the config minus head, loss and decision
    fields, and the backbone's parameters (a frozen backbone's weights are part of what it computes)."""
    from hrrkit.models.feature_cache import state_fingerprint

    config = detector.config.to_dict()
    for key in ("name", "head", "loss", "threshold", "unsure", "calibration"):
        config.pop(key, None)
    payload = json.dumps(config, sort_keys=True, default=str) + state_fingerprint(detector.msr.backbone)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_rng(file_sha: str, copy: int, seed: int) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{file_sha}|{copy}|{seed}".encode()).hexdigest()[:16], 16))


@torch.no_grad()
def _front_end(detector, images: list) -> torch.Tensor:
    """``(B, S, D)`` per-scale descriptors of PIL images (views of one image averaged, as MSR does)."""
    views = [detector.preprocess(img) for img in images]
    owners = torch.cat([torch.full((v.shape[0],), i) for i, v in enumerate(views)])
    device = next(detector.parameters()).device
    batch = [t.to(device) for v in views for t in v]
    detector.msr.keep_intermediates = False
    try:
        out = detector.msr(batch)
    finally:
        detector.msr.keep_intermediates = True
    per_view = torch.stack(out.descriptors, dim=1).float().cpu()  # (V, S, D)
    sums = torch.zeros(len(images), *per_view.shape[1:]).index_add_(0, owners, per_view)
    return sums / torch.bincount(owners, minlength=len(images)).clamp_min(1)[:, None, None].float()


def describe(
    detector,
    paths: Sequence[str | os.PathLike],
    labels: Sequence[int],
    *,
    weights: Sequence[float] | None = None,
    copies: int = 0,
    augment: str | Callable[[Image.Image, random.Random], Image.Image] = "delivery",
    seed: int = 0,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str = "descriptors",
) -> Descriptors:
    """Descriptors of every file, for copy 0 (the file as it is) and ``copies`` augmented copies.

    Rows are ordered copy-major (all files for copy 0, then copy 1, ...). ``augment`` is a preset name of
    :data:`~hrrkit.data.dataset.AUGMENTATION_PRESETS` or any ``(img, rng) -> img`` transform with a
    ``name`` (e.g. a :class:`hrrkit.eval.perturb.Perturbation`, to score a delivery chain as copy 1).
    The augmentation of copy c of a file is drawn from ``(file SHA-256, c, seed)``, so it is the same in
    every run. With ``cache_dir``, each (file, copy) descriptor is stored as
    ``<cache_dir>/<front end>/<aug>-s<seed>/<sha>-<c>.npy`` (copy 0: ``<front end>/clean/<sha>.npy``)
    (float32) and read back on the next call. A file that cannot be read raises
    :class:`~hrrkit.data.io.ImageLoadError` naming it; descriptors already computed stay cached.
    """
    (out,) = describe_together([detector], paths, labels, weights=weights, copies=copies, augment=augment, seed=seed,
                               batch_size=batch_size, cache_dir=cache_dir, progress=progress, desc=desc)
    return out


def describe_together(
    detectors: Sequence,
    paths: Sequence[str | os.PathLike],
    labels: Sequence[int],
    *,
    weights: Sequence[float] | None = None,
    copies: int = 0,
    augment: str | Callable[[Image.Image, random.Random], Image.Image] = "delivery",
    seed: int = 0,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str = "descriptors",
) -> list[Descriptors]:
    """:func:`describe` for several detectors at once: one :class:`Descriptors` per detector, each equal
    to what :func:`describe` gives it alone (and cached alike).

    Each image and augmented copy is read and drawn once per batch and handed to every detector that
    still needs it, detector after detector, so front ends that share work per batch — backbones
    joined by :func:`hrrkit.models.dinov2.shared_trunk` — do it once. ``detectors`` must read images
    alike (the same ``input.max_pixels``).
    """
    from tqdm.auto import tqdm

    detectors = list(detectors)
    if not detectors:
        raise ValueError("describe_together: no detectors")
    if len(paths) != len(labels):
        raise ValueError(f"describe: {len(paths)} paths but {len(labels)} labels")
    max_pixels = {d.config.input.max_pixels for d in detectors}
    if len(max_pixels) != 1:
        raise ValueError(f"describe_together: the detectors read images at different input.max_pixels {max_pixels}")
    (max_pixels,) = max_pixels
    if isinstance(augment, str):
        transform, augment_name = (AUGMENTATION_PRESETS[augment] if copies else None), augment
    else:
        transform, augment_name = augment, str(getattr(augment, "name", type(augment).__name__))
    augment_name = augment_name.replace("/", "_").replace(":", "-")
    shas = [_file_sha256(p) for p in paths]
    roots = [None if cache_dir is None else Path(cache_dir) / front_end_fingerprint(d) for d in detectors]

    def cached_path(m: int, c: int, i: int) -> Path | None:
        # copy 0 (the file as it is) does not depend on the augmentation or the seed: one entry for all
        root = roots[m]
        if root is None:
            return None
        return root / "clean" / f"{shas[i]}.npy" if c == 0 else root / f"{augment_name}-s{seed}" / f"{shas[i]}-{c}.npy"

    jobs = [(c, i) for c in range(copies + 1) for i in range(len(paths))]
    values: list[list[torch.Tensor | None]] = [[None] * len(jobs) for _ in detectors]
    todo = []  # jobs some detector still needs
    for j, (c, i) in enumerate(jobs):
        for m in range(len(detectors)):
            cached = cached_path(m, c, i)
            if cached is not None and cached.exists():
                try:
                    values[m][j] = torch.from_numpy(np.load(cached))
                    continue
                except (OSError, ValueError):
                    pass  # a torn or foreign file: recompute it
        if any(v[j] is None for v in values):
            todo.append(j)
    modes = [d.training for d in detectors]
    for d in detectors:
        d.eval()
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress or not todo)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            images = []
            for j in chunk:
                c, i = jobs[j]
                img = load_image(paths[i], max_pixels=max_pixels)
                if c > 0:
                    img = transform(img, _copy_rng(shas[i], c, seed))
                images.append(img)
            for m, detector in enumerate(detectors):
                needed = [k for k, j in enumerate(chunk) if values[m][j] is None]
                if not needed:
                    continue
                out = _front_end(detector, [images[k] for k in needed])
                for row, k in enumerate(needed):
                    j = chunk[k]
                    values[m][j] = out[row]
                    target = cached_path(m, *jobs[j])
                    if target is not None:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        _save_npy(target, out[row].numpy())
            bar.update(len(chunk))
    finally:
        bar.close()
        for d, mode in zip(detectors, modes):
            d.train(mode)
    w = [1.0] * len(paths) if weights is None else [float(x) for x in weights]
    reps = copies + 1
    label_tensor = torch.tensor(list(labels) * reps, dtype=torch.float32)
    weight_tensor = torch.tensor(w * reps, dtype=torch.float32)
    return [Descriptors(torch.stack(v), label_tensor.clone(), weight_tensor.clone(), [str(p) for p in paths] * reps)
            for v in values]


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- the head


def _class_balanced(labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sample weights scaled so each class sums to half the total (mean weight 1)."""
    out = weights.clone()
    for value in (0.0, 1.0):
        mask = labels == value
        total = weights[mask].sum()
        if total > 0:
            out[mask] = weights[mask] / total * (0.5 * len(labels))
    return out


def _fused(detector, values: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` fused descriptors from per-scale ``(N, S, D)`` with the MSR's scale weights."""
    w = detector.msr.scale_weights(values.device).to(values.dtype)
    return torch.einsum("s,nsd->nd", w, values)


def scores_of(detector, values: torch.Tensor) -> torch.Tensor:
    """``(N,)`` probability of generated for per-scale descriptors ``(N, S, D)`` (head in eval mode)."""
    was = detector.head.training
    detector.head.eval()
    with torch.no_grad():
        logits = detector.head(_fused(detector, values.to(next(detector.head.parameters()).device)))
    detector.head.train(was)
    return torch.sigmoid(logits.float()).cpu()


def fit_head(detector, train: Descriptors, val: Descriptors | None, config: FrozenFitConfig, *,
             eval_every: int = 5, progress: bool = True) -> FrozenFitResult:
    """Train ``detector.head`` (in place) on ``train``; keep the epoch with the best ``val`` AUC.

    The loss is the detector's own (:meth:`HRRDetector.compute_loss` on the fused logit and the
    per-scale logits), weighted per sample (class-balanced when ``config.balance``). Without ``val``,
    the last epoch is kept. Returns a :class:`FrozenFitResult`.
    """
    from tqdm.auto import tqdm

    from hrrkit.models.detector import DetectorOutput

    torch.manual_seed(config.seed)
    device = next(detector.head.parameters()).device
    head = detector.head
    x = train.values.to(device)
    y = train.labels.to(device)
    w = (_class_balanced(train.labels, train.weights) if config.balance else train.weights).to(device)
    decay, no_decay = [], []
    skip = {name.removeprefix("head.") for name in detector.no_weight_decay()}
    for name, p in head.named_parameters():
        (no_decay if name in skip or p.dim() < 2 else decay).append(p)
    lr = config.lr if config.lr is not None else DEFAULT_LR.get(detector.config.head.kind, 3e-3)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, config.epochs) / config.epochs)))
    best = {"epoch": config.epochs, "auc": float("nan"), "ap": float("nan"), "state": None}
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    scale_weights = detector.msr.scale_weights(device).to(x.dtype)
    per_scale, fused = x.transpose(0, 1), torch.einsum("s,nsd->nd", scale_weights, x)
    head_logits = _fixed_input_logits(head, per_scale, fused)
    bar = tqdm(range(1, config.epochs + 1), desc="head", unit="epoch", disable=not progress)
    for epoch in bar:
        head.train()
        scale_logits, logits = head_logits()  # (S, N), (N,)
        output = DetectorOutput(logits=logits, scale_logits=scale_logits, msr=None)
        total, parts = _weighted_loss(detector, output, y, w)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        detector.after_optimizer_step(optimizer.param_groups[0]["lr"])
        schedule.step()
        record = {"epoch": epoch, **parts}
        if val is not None and (epoch % eval_every == 0 or epoch == config.epochs):
            s = scores_of(detector, val.values).numpy()
            yv = val.labels.numpy()
            record["val_auc"], record["val_ap"] = roc_auc(yv, s), average_precision(yv, s)
            if not record["val_auc"] <= best["auc"]:  # first evaluation, or better
                best.update(epoch=epoch, auc=record["val_auc"], ap=record["val_ap"],
                            state=copy_module.deepcopy(head.state_dict()))
            bar.set_postfix(loss=f"{parts['loss']:.3f}", val_auc=f"{record['val_auc']:.3f}")
        history.append(record)
    if best["state"] is not None:
        head.load_state_dict(best["state"])
    head.eval()
    return FrozenFitResult(best_epoch=int(best["epoch"]), val_auc=float(best["auc"]), val_ap=float(best["ap"]),
                           history=history, seconds=time.perf_counter() - start, config=asdict(config))


def _fixed_input_logits(head, per_scale: torch.Tensor, fused: torch.Tensor):
    """A function giving ``(head(per_scale), head(fused))`` in training mode, epoch after epoch, on inputs
    that never change (full batch over fixed descriptors).

    For the AFR head (:class:`~hrrkit.nn.additive.SparseAdditiveRefinement` directly on the
    descriptor), the normalised input ``u`` uses the batch's statistics in training mode, so it is the
    same every epoch, and so is its basis expansion ``φ(u)`` ``(..., D, K)``: it is evaluated once and
    each epoch's logit is ``bias + Σ_jk β_jk φ_k(u_j)``, a contraction (the running statistics are still
    updated twice per epoch, as the plain forward does). The reference basis on CPU otherwise costs
    seconds per epoch at D = 3072. Any other head runs its forward."""
    from hrrkit.nn.additive import SparseAdditiveRefinement
    from hrrkit.ops.additive import additive_basis

    afr = getattr(head, "afr", None)
    exact = (isinstance(afr, SparseAdditiveRefinement) and type(head).forward.__qualname__.startswith(
        "AdditiveRefinementHead.") and per_scale.shape[0] * per_scale.shape[1] > 1 and fused.shape[0] > 1
        and afr.normalization != "none")
    if not exact:
        return lambda: (head(per_scale), head(fused))

    def expanded(h: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            u = afr.normalize(h)
        return additive_basis(u, afr.num_basis, basis=afr.basis, lo=afr.lo, hi=afr.hi, rbf_width=afr.rbf_width,
                              extrapolation=afr.extrapolation)

    was, momentum = afr.training, afr.momentum
    afr.train()
    saved = {k: v.clone() for k, v in afr.named_buffers()}
    phi_scales, phi_fused = expanded(per_scale), expanded(fused)
    targets = []  # what each forward moves the running statistics towards (momentum 1 lands on it)
    afr.momentum = 1.0
    for h in (per_scale, fused):
        with torch.no_grad():
            afr.normalize(h)
        targets.append((afr.running_mean.clone(), afr.running_var.clone()))
    afr.momentum = momentum
    for k, v in afr.named_buffers():  # none of this counts as a step
        v.copy_(saved[k])
    afr.train(was)

    def logits():
        with torch.no_grad():  # the running statistics, as the plain forward updates them
            for mean, var in targets:
                afr.running_mean.lerp_(mean, momentum)
                afr.running_var.lerp_(var, momentum)
                afr.num_batches_tracked += 1
        beta = afr.beta.to(phi_fused.dtype)
        return (afr.bias + torch.einsum("sndk,dk->sn", phi_scales, beta),
                afr.bias + torch.einsum("ndk,dk->n", phi_fused, beta))

    return logits


def _weighted_loss(detector, output, labels: torch.Tensor, weights: torch.Tensor):
    """The detector's loss with per-sample weights: the head's loss is computed on each sample (so its
    BCE/correntropy terms see the weights) and the scale KL and sparsity terms as the detector does."""
    import torch.nn.functional as F

    from hrrkit.ops.correntropy import correntropy_loss

    head = detector.head
    loss_cfg = detector.config.loss
    bce = (F.binary_cross_entropy_with_logits(output.logits, labels, reduction="none") * weights).mean()
    total = loss_cfg.bce * bce
    parts = {"bce": bce.item()}
    if loss_cfg.correntropy > 0 and hasattr(head, "correntropy"):
        per_sample = correntropy_loss(output.logits, 2 * labels - 1, sigma=head.correntropy.sigma, reduction="none",
                                      impl=head.correntropy.impl)
        cor = (per_sample * weights).mean()
        total = total + loss_cfg.correntropy * cor
        parts["correntropy"] = cor.item()
    if getattr(head, "penalty_mode", "proximal") == "loss" and getattr(head, "sparsity", 0) > 0:
        total = total + head.sparsity * head.afr.penalty()
    if loss_cfg.scale_kl > 0 and output.scale_logits.shape[0] > 1:
        kl = detector.scale_kl(output.scale_logits)
        total = total + loss_cfg.scale_kl * kl
        parts["scale_kl"] = kl.item()
    parts["loss"] = total.item()
    return total, parts
