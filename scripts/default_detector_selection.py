"""The validation-only design search behind hrrkit's default detector (issue 25; docs/design.md).

Every candidate is an ``HRRDetector`` with a frozen front end: its per-scale descriptors are computed once
per image and copy (:func:`hrrkit.train.frozen.describe`, cached under ``CACHE/descriptors``) and only
the head is trained (:func:`hrrkit.train.frozen.fit_head`). Front ends are few (each costs a backbone
pass over the data); head-side variants slice their descriptors: a subset of scales, of DINOv2 blocks
(channel groups), or of the style statistics (the global ``style`` part of a ``both`` descriptor).

Two figures per variant, both on wild v2's ``train`` + ``val`` only (the test split is never read):
``val`` (train on train, score val) and ``lofo`` (5-fold leave-family-out over train+val: each fold's
families and photo packages are held out together; mean AUC over folds, and per report group on the
pooled out-of-fold scores).

    python scripts/default_detector_selection.py CACHE_DIR [--variants a,b] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hrrkit.datasets.wild_v2 import WildV2Config, build_wild_v2
from hrrkit.eval.metrics import average_precision, roc_auc
from hrrkit.models.config import DetectorConfig
from hrrkit.models.detector import HRRDetector
from hrrkit.train.frozen import Descriptors, FrozenFitConfig, describe, fit_head, scores_of

BLOCKS = (3, 6, 9, 12)
CHANNELS = 384

# front ends: one backbone pass each (config changes on a DetectorConfig)
FRONT_ENDS: dict[str, dict] = {
    "dino-image": {
        "input.crop_size": 224, "rescale.scales": (0.5, 1.0), "rescale.dither_std": 0.0, "line.enabled": False,
        "retrospector.kind": "none", "retrospector.input": "image", "style.pixel_residual_stats": False,
        "style.levels": (1, 2), "style.descriptor": "both",
        "backbone.name": "dinov2_vits14", "backbone.options": {"pretrained": True, "frozen": True, "blocks": list(BLOCKS)},
    },
    "dino-line": {
        "input.crop_size": 224, "rescale.scales": (1.0,), "rescale.dither_std": 0.0, "line.enabled": True,
        "retrospector.kind": "none", "retrospector.input": "image", "style.pixel_residual_stats": False,
        "style.levels": (1, 2), "style.descriptor": "both",
        "backbone.name": "dinov2_vits14", "backbone.options": {"pretrained": True, "frozen": True, "blocks": list(BLOCKS)},
    },
    "dino-cls": {
        "input.crop_size": 224, "rescale.scales": (0.5, 1.0), "rescale.dither_std": 0.0, "line.enabled": False,
        "retrospector.kind": "none", "retrospector.input": "image", "style.pixel_residual_stats": False,
        "style.enabled": False,
        "backbone.name": "dinov2_vits14",
        "backbone.options": {"pretrained": True, "frozen": True, "blocks": list(BLOCKS), "tokens": "cls"},
    },
    "dino-residual": {
        "input.crop_size": 224, "rescale.scales": (1.0,), "rescale.dither_std": 0.0, "line.enabled": False,
        "retrospector.kind": "pixel_ddim", "retrospector.path": "hrrkit:real-photo-unet", "retrospector.input": "residual",
        "style.pixel_residual_stats": False, "style.levels": (1, 2), "style.descriptor": "both",
        "backbone.name": "dinov2_vits14",
        "backbone.options": {"pretrained": True, "frozen": True, "blocks": list(BLOCKS), "input_offset": -1.0},
    },
}


@dataclass
class Variant:
    """A head-side variant of a front end: which scales, blocks and statistics the head sees."""

    front_end: str
    scales: tuple[float, ...] = (1.0,)
    blocks: tuple[int, ...] = BLOCKS
    statistics: str = "style"  # "style" (global mean|log-std), "mean" (plain pooling), "both" (+ finer-cell
    # content), "cls" (CLS tokens)
    head: dict = field(default_factory=dict)  # HeadConfig / LossConfig changes ("head.kind", "loss.scale_kl")
    copies: int = 2
    fit: dict = field(default_factory=dict)
    lofo: bool = True  # also the 5-fold leave-family-out figures (6 fits instead of 1)


def _variants() -> dict[str, Variant]:
    """Front ends and features are compared with the linear head (seconds per fit); heads then on the best
    features (the AFR head's CPU reference costs seconds per epoch at D = 3072)."""
    linear = {"head.kind": "linear", "loss.correntropy": 0.0, "loss.sparsity": 0.0}
    best = {"front_end": "dino-image", "scales": (0.5, 1.0)}
    return {
        # what the backbone sees, which blocks, which scales, which statistics (linear head)
        "lin-style-b12-s1": Variant("dino-image", blocks=(12,), head=linear),
        "lin-style-b3-12-s1": Variant("dino-image", head=linear),
        "lin-style-b3-12-s05": Variant("dino-image", scales=(0.5,), head=linear),
        "lin-style-b3-12-s05+1": Variant(**best, head=linear),
        "lin-both-b3-12-s05+1": Variant(**best, statistics="both", head=linear),
        # line enhancement and the CLS tokens are compared without augmented copies (a third of the backbone
        # passes), against the same features without them
        "lin-style-b3-12-s1-noaug": Variant("dino-image", head=linear, copies=0),
        "lin-line-style-b3-12-s1-noaug": Variant("dino-line", head=linear, copies=0),
        "lin-residual-style-b3-12-s1": Variant("dino-residual", head=linear, copies=0),
        "lin-cls-b3-12-s05+1-noaug": Variant("dino-cls", scales=(0.5, 1.0), statistics="cls", head=linear, copies=0),
        "lin-style-b3-12-s05+1-noaug": Variant(**best, head=linear, copies=0),
        # UnivFD's recipe on the same backbone: a linear probe on the last CLS token, one scale
        "univfd-cls12-s1": Variant("dino-cls", blocks=(12,), statistics="cls", head=linear, copies=0),
        # plain pooling of the same tokens (no style statistics): what hrr_dino_no_msr keeps
        "lin-mean-b3-12-s1": Variant("dino-image", statistics="mean", head=linear),
        # heads on the chosen features (AFR costs seconds per epoch on this CPU: 40 epochs)
        "afr-bspline-style-b3-12-s1": Variant("dino-image", fit={"epochs": 40}),
        "afr-rbf-style-b3-12-s1": Variant("dino-image", head={"head.basis": "rbf"}, fit={"epochs": 40}),
        "afr-bspline-style-b3-12-s1-lr1e-2": Variant("dino-image", fit={"epochs": 100, "lr": 1e-2}),
        "afr-bspline-style-b3-12-s1-lr3e-2": Variant("dino-image", fit={"epochs": 100, "lr": 3e-2}, lofo=False),
        "afr-bspline-style-b3-12-s1-lr3e-2-k4": Variant("dino-image", head={"head.num_basis": 4},
                                                        fit={"epochs": 100, "lr": 3e-2}, lofo=False),
        "afr-bspline-style-b3-12-s1-lr3e-2-std": Variant("dino-image", head={"head.normalization": "standardize"},
                                                         fit={"epochs": 100, "lr": 3e-2}),
        "afr-bspline-style-b3-12-s1-lr3e-2-l3e-3": Variant("dino-image", head={"loss.sparsity": 3e-3},
                                                           fit={"epochs": 100, "lr": 3e-2}, lofo=False),
        "afr-bspline-style-b3-12-s1-lr3e-2-k16": Variant("dino-image", head={"head.num_basis": 16},
                                                         fit={"epochs": 100, "lr": 3e-2}, lofo=False),
        "afr-bspline-style-b3-12-s05+1": Variant(**best, fit={"epochs": 40}, lofo=False),
        "afr-bspline-style-b3-12-s05+1-nokl": Variant(**best, head={"loss.scale_kl": 0.0}, fit={"epochs": 40},
                                                      lofo=False),
        "afr-bspline-style-b3-12-s1-sparse": Variant("dino-image", head={"loss.sparsity": 1e-2}, fit={"epochs": 40},
                                                     lofo=False),
    }


def front_end_config(name: str) -> DetectorConfig:
    return DetectorConfig(name=name).replace(**FRONT_ENDS[name])


def _columns(front: str, variant: Variant) -> np.ndarray:
    """Descriptor columns of ``variant`` inside its front end's descriptor (StyleStatistics layout:
    content ``(C, K-1, 2)`` channel-major, then style ``[mean (C) | log-std (C)]``; CLS: ``(C)``)."""
    nb = len(BLOCKS)
    c_total = CHANNELS * nb
    chans = np.concatenate([np.arange(CHANNELS) + CHANNELS * BLOCKS.index(b) for b in variant.blocks])
    if variant.statistics == "cls":
        return chans
    config = front_end_config(front)
    cells = sum(n * n for n in config.style.levels)
    content_dim = 2 * c_total * (cells - 1)
    style = np.concatenate([content_dim + chans, content_dim + c_total + chans])
    if variant.statistics == "style":
        return style
    if variant.statistics == "mean":
        return content_dim + chans
    content = (chans[:, None] * (2 * (cells - 1)) + np.arange(2 * (cells - 1))[None]).reshape(-1)
    return np.concatenate([content, style])


def variant_config(name: str, variant: Variant) -> DetectorConfig:
    """The detector ``variant`` stands for (what would ship): its front end restricted to the variant's
    scales, blocks and statistics, with its head settings."""
    changes: dict = {"rescale.scales": variant.scales, **variant.head}
    options = dict(FRONT_ENDS[variant.front_end]["backbone.options"], blocks=list(variant.blocks))
    changes["backbone.options"] = options
    if variant.statistics == "style":
        changes.update({"style.levels": (1,), "style.descriptor": "style"})
    elif variant.statistics == "mean":
        changes.update({"style.enabled": False})
    return front_end_config(variant.front_end).replace(name=name, **changes)


def _subset(d: Descriptors, rows: np.ndarray, scale_idx: list[int], cols: np.ndarray) -> Descriptors:
    r = torch.as_tensor(rows)
    return Descriptors(d.values[r][:, scale_idx][:, :, torch.as_tensor(cols)], d.labels[r], d.weights[r],
                       [d.paths[i] for i in rows.tolist()])


def evaluate(name: str, variant: Variant, desc: Descriptors, meta: dict) -> dict:
    """Val and leave-family-out figures of one variant: heads trained on its slice of the cached descriptors.

    ``desc`` holds train+val images copy-major (``meta["n"]`` rows per copy); ``meta`` gives each image's
    split, fold and report group."""
    front = front_end_config(variant.front_end)
    scale_idx = [tuple(front.rescale.scales).index(s) for s in variant.scales]
    cols = _columns(variant.front_end, variant)
    detector = HRRDetector(variant_config(name, variant))
    if detector.descriptor_dim != len(cols):
        raise RuntimeError(f"{name}: the config's descriptor has {detector.descriptor_dim} dims, the slice {len(cols)}")
    fit_config = FrozenFitConfig(copies=variant.copies, **variant.fit)
    n = meta["n"]
    copies_avail = len(desc) // n
    copy_of = np.repeat(np.arange(copies_avail), n)
    split, fold, group = (np.tile(meta[k], copies_avail) for k in ("split", "fold", "group"))
    usable = copy_of <= min(variant.copies, copies_avail - 1)
    y = desc.labels.numpy()

    def fit(fit_rows: np.ndarray, val_rows: np.ndarray | None):
        torch.manual_seed(fit_config.seed)
        detector.head = detector.config.head.build(detector.descriptor_dim, detector.config.loss)
        val = None if val_rows is None else _subset(desc, val_rows, scale_idx, cols)
        return fit_head(detector, _subset(desc, fit_rows, scale_idx, cols), val, fit_config, progress=False)

    res = fit(np.flatnonzero(usable & (split == "train")), np.flatnonzero((copy_of == 0) & (split == "val")))
    out = {"val_auc": res.val_auc, "val_ap": res.val_ap, "best_epoch": res.best_epoch}
    if not variant.lofo:
        return out
    pooled = np.full(len(desc), np.nan)
    aucs = []
    for k in sorted(set(meta["fold"].tolist())):
        held = np.flatnonzero((copy_of == 0) & (fold == k))
        fit(np.flatnonzero(usable & (fold != k)), None)
        pooled[held] = scores_of(detector, _subset(desc, held, scale_idx, cols).values).numpy()
        aucs.append(roc_auc(y[held], pooled[held]))
    clean = copy_of == 0
    out["lofo_auc_mean"] = float(np.mean(aucs))
    out["lofo_auc_folds"] = [round(a, 4) for a in aucs]
    out["lofo_auc_pooled"] = roc_auc(y[clean], pooled[clean])
    out["lofo_ap_pooled"] = average_precision(y[clean], pooled[clean])
    for g in ("text-to-image", "edit", "video", "upscale"):
        mask = clean & ((y == 0) | (group == g))
        if (y[mask] == 1).any():
            out[f"lofo_auc_{g}"] = roc_auc(y[mask], pooled[mask])
    return out


def markdown_table(results: dict) -> str:
    """One row per variant: val AUC/AP, leave-family-out mean and pooled AUC, pooled AUC per group."""
    def f(v):
        return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"

    rows = ["| variant | front end | scales | blocks | statistics | head | copies | val AUC | val AP | LOFO AUC (mean of 5) "
            "| LOFO pooled | t2i | edit | video | upscale |", "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        v = r["variant"]
        head = ", ".join(f"{k.split('.')[-1]}={x}" for k, x in v["head"].items() if k != "loss.correntropy") or "AFR"
        if v.get("fit"):
            head += " (" + ", ".join(f"{k}={x}" for k, x in v["fit"].items()) + ")"
        rows.append(f"| {name} | {v['front_end']} | {'+'.join(f'{x:g}' for x in v['scales'])} | "
                    f"{','.join(str(b) for b in v['blocks'])} | {v['statistics']} | {head} | {v['copies']} | "
                    f"{f(r['val_auc'])} | {f(r['val_ap'])} | {f(r.get('lofo_auc_mean'))} | {f(r.get('lofo_auc_pooled'))} | "
                    f"{f(r.get('lofo_auc_text-to-image'))} | {f(r.get('lofo_auc_edit'))} | {f(r.get('lofo_auc_video'))} | "
                    f"{f(r.get('lofo_auc_upscale'))} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--variants", default="", help="comma list (default: all)")
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", nargs="+", type=Path, metavar="RESULTS_JSON",
                        help="print the Markdown table of these result files and exit")
    parser.add_argument("--max-per-source", type=lambda v: None if v == "none" else int(v), default=64,
                        help="photos kept per photo package (wild v2's default 64; 'none' = all)")
    args = parser.parse_args(argv)
    if args.table:
        results = {}
        for path in args.table:
            results.update(json.loads(path.read_text()))
        print(markdown_table(results))
        return 0
    torch.set_num_threads(2)
    bench = build_wild_v2(progress=True, config=WildV2Config(folds=5, max_per_source=args.max_per_source))
    rows = bench.records("train") + bench.records("val")
    paths = [str(bench.root / r["path"]) for r in rows]
    labels = [int(r["label"]) for r in rows]
    weights = [float(r["weight"]) for r in rows]
    meta = {"n": len(rows), "split": np.array([r["split"] for r in rows]),
            "fold": np.array([int(r["fold"]) for r in rows]),
            "group": np.array([r["group"] or "photo" for r in rows])}
    print(f"wild v2 {bench.key}: {len(rows)} train+val images, folds {sorted(set(meta['fold'].tolist()))}")
    wanted = _variants()
    if args.variants:
        wanted = {k: v for k, v in wanted.items() if k in args.variants.split(",")}
    results = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    if not args.variants:  # default: what has no result yet
        wanted = {k: v for k, v in wanted.items() if k not in results}
    by_front: dict[str, list[str]] = {}
    for name, variant in wanted.items():
        by_front.setdefault(variant.front_end, []).append(name)
    for front in sorted(by_front, key=list(FRONT_ENDS).index):  # cheapest first: the image, then line, CLS, residual
        names = by_front[front]
        started = time.perf_counter()
        copies = min(args.copies, max(wanted[n].copies for n in names))
        desc = describe(HRRDetector(front_end_config(front)), paths, labels, weights=weights, copies=copies,
                        cache_dir=args.cache / "descriptors", desc=front)
        describe_s = time.perf_counter() - started
        for name in names:
            t0 = time.perf_counter()
            r = evaluate(name, wanted[name], desc, meta)
            r.update(front_end=front, describe_s=round(describe_s, 1), fit_s=round(time.perf_counter() - t0, 1),
                     variant={k: (list(v) if isinstance(v, tuple) else v) for k, v in wanted[name].__dict__.items()})
            results[name] = r
            nan = float("nan")
            print(f"{name:36s} val AUC {r['val_auc']:.3f} AP {r['val_ap']:.3f} | LOFO AUC mean "
                  f"{r.get('lofo_auc_mean', nan):.3f} pooled {r.get('lofo_auc_pooled', nan):.3f} t2i "
                  f"{r.get('lofo_auc_text-to-image', nan):.3f} edit {r.get('lofo_auc_edit', nan):.3f} video "
                  f"{r.get('lofo_auc_video', nan):.3f} ({r['fit_s']:.0f}s)", flush=True)
            if args.out:
                args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
