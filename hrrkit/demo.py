"""``hrrkit demo``: HRR and the field's baselines on real generators' images, offline, on a CPU.

1. build (or reuse) the wild benchmark (:mod:`hrrkit.datasets.wild`, ``pip install "hrrkit[wild]"``):
   held-out photographs vs the outputs of ~40 real text-to-image generators (``test_generators``) and
   of image-edit models (``test_edited``); training and validation fakes are content-matched
   regenerations of other photographs (Real-ESRGAN, hrrkit's real-photo diffusion model), so no real
   generator is ever seen in training;
2. train every detector — HRR, its ablations and the baselines — on ``train`` with the same data,
   seeds, epochs and optimiser, choosing the epoch on ``val`` only;
3. score both test splits and a delivery-robustness chain (WebP, social-media JPEG) once;
4. write ``runs/demo/``: ``report.md`` (tables with bootstrap intervals and paired verdicts, ROC
   curves, a per-generator heat table, evidence maps, timings), ``report.json``, ``scores.csv`` (one row
   per detector, seed, split and image: every number in the report can be recomputed from it) and
   the trained detectors (``detectors/<name>/seed<k>/best``, usable by ``hrrkit detect --model``).

Every number in the report comes from this run. What the budget cut is said in the report.
"""

from __future__ import annotations

import csv
import math
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrrkit.eval.comparison import compare_detectors, format_comparison_table, plot_generator_heatmap, plot_roc_curves
from hrrkit.eval.predict import predict_dataset
from hrrkit.models.config import DetectorConfig
from hrrkit.models.detector import HRRDetector, load_detector
from hrrkit.models.presets import preset_config, preset_descriptions
from hrrkit.train.config import TrainConfig
from hrrkit.train.trainer import fit, seed_everything
from hrrkit.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

#: The detectors, in report order: the method, its ablations, then the baselines.
DETECTORS = ("hrr", "hrr_no_msr", "hrr_no_afr", "hrr_no_retrospection", "dire", "univfd", "npr", "cnnspot")
#: The detector the others are compared with (paired bootstrap of the AUC difference).
REFERENCE = "hrr"
TEST_SPLITS = {"test_generators": "real generators (text-to-image)", "test_edited": "image-edit models"}
#: Delivery chains for the robustness table (``hrrkit eval --perturb`` specs), on ``test_generators``.
ROBUSTNESS = ("webp:75", "downscale-then-jpeg:0.5")


@dataclass(frozen=True)
class DemoSettings:
    """How much the demo trains: the same for every detector.

    ``seeds``: training seeds per detector (the table shows mean ± spread over them);
    ``frozen_backbone``: the pretrained backbone is frozen for every detector (its features are then
    computed once per image and cached; fine-tuning, which DIRE and CNNSpot do, does not fit the CPU
    budget — the report says so); ``n_boot``: bootstrap replicates of the intervals.
    """

    epochs: int
    batch_size: int
    lr: float
    seeds: tuple[int, ...]
    frozen_backbone: bool = True
    n_boot: int = 1000


FULL_SETTINGS = DemoSettings(epochs=8, batch_size=32, lr=2e-3, seeds=(0, 1, 2))
QUICK_SETTINGS = DemoSettings(epochs=2, batch_size=16, lr=3e-3, seeds=(0,), n_boot=200)


#: HRR and its ablations as the demo trains them, chosen on ``val`` (docs/design.md, "The demo's HRR"):
#: the frozen ImageNet EfficientNet-Lite0 read at level 3 (112 channels at 1/16) with style grid levels
#: (1, 2) — val AUC 0.64 against 0.53 for the compact CNN trained from scratch, in 15 s instead of 400 s;
#: level 5 (the 1280-channel head) reached 0.81 but cost 490 s per seed, beyond the CPU budget — and
#: scales (0.5, 1): scale 2 would quadruple the retrospector's cost on 128-px images.
HRR_DEMO_CHANGES: dict[str, Any] = {
    "backbone.name": "efficientnet_lite0",
    "backbone.options": {"pretrained": True, "out_index": 3, "frozen": True},
    "style.levels": [1, 2],
    "rescale.scales": [0.5, 1.0],
}


def demo_detector_config(name: str, settings: DemoSettings, feature_cache: Path | None = None) -> DetectorConfig:
    """The preset ``name`` as the demo trains it.

    Every image of the benchmark is already one square size, so every detector takes the whole image
    (``native``) in training and evaluation. HRR and its ablations take :data:`HRR_DEMO_CHANGES`. The
    pretrained backbone is frozen when ``settings.frozen_backbone`` (see :class:`DemoSettings`), its
    features cached in the folder ``feature_cache`` when given.
    """
    config = preset_config(name)
    changes: dict[str, Any] = {"input.policy": "native", "input.eval_policy": "native"}
    if name.startswith("hrr"):
        changes.update({k: v for k, v in HRR_DEMO_CHANGES.items()
                        if k != "rescale.scales" or config.rescale.enabled})
    config = config.replace(**changes)
    if settings.frozen_backbone and config.backbone.name == "efficientnet_lite0":
        options = {**config.backbone.options, "frozen": True}
        if feature_cache is not None:
            options["feature_cache"] = str(feature_cache)
        config = config.replace(**{"backbone.options": options})
    return config


def _dataset(model: HRRDetector, samples, *, train: bool, seed: int, retrospection_cache: Path | None):
    """The dataset a detector reads: cached (x̃_s, x̂_s) pairs when it has a retrospector and no pixel
    augmentation (each image is retrospected once, whatever the detector, seed or epoch — the training
    dither is a function of the content hash, the scale and the benchmark seed, not the training seed),
    else the images themselves."""
    config = model.config
    base = config.input.dataset(samples, train=train, seed=seed)
    if retrospection_cache is None or model.msr.retrospector is None or not base.augmentation.is_identity:
        return base
    from hrrkit.retrospect.views import RetrospectedDataset, RetrospectionStage

    stage = RetrospectionStage(model, seed=0, dither=True if train else None)
    return RetrospectedDataset(base, stage, retrospection_cache)


def _log(message: str) -> None:
    print(message, flush=True)


def _describe(config: DetectorConfig) -> dict[str, Any]:
    """What a reader needs to know of a detector: retrospector, backbone, input, head, scales."""
    retro = config.retrospector
    backbone = config.backbone
    return {
        "retrospector": "none" if retro.kind == "none" else f"{retro.kind}" + (f" ({retro.path})" if retro.path else ""),
        "backbone_input": retro.input if retro.kind != "none" else "image",
        "backbone": backbone.name + (" (frozen)" if backbone.options.get("frozen") else ""),
        "scales": list(config.rescale.scales) if config.rescale.enabled else [1.0],
        "line_enhancement": bool(config.line.enabled),
        "style_statistics": bool(config.style.enabled),
        "head": config.head.kind,
        "augment": config.input.augment,
    }


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    quick: bool = False,
    device: str | torch.device = "cpu",
    cache_root: str | Path | None = None,
    detectors: tuple[str, ...] = DETECTORS,
    progress: bool = True,
    settings: DemoSettings | None = None,
    benchmark_seed: int = 0,
) -> dict[str, Any]:
    """Run the demo; returns the report payload (also written to ``out_dir/report.json``)."""
    from hrrkit.datasets.wild import build_wild_benchmark

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    settings = settings or (QUICK_SETTINGS if quick else FULL_SETTINGS)
    known = set(preset_descriptions())
    unknown = [d for d in detectors if d not in known]
    if unknown:
        raise ValueError(f"unknown detector(s) {unknown}; the presets are {sorted(known)}")
    if REFERENCE not in detectors:
        detectors = (REFERENCE, *detectors)
    timings: dict[str, float] = {}

    _log(f"[1/4] wild benchmark ({'quick' if quick else 'full'}) ...")
    t0 = time.perf_counter()
    bench = build_wild_benchmark(cache_root, seed=benchmark_seed, quick=quick, progress=progress)
    timings["benchmark"] = time.perf_counter() - t0
    counts = bench.counts()
    _log(f"      {'reused' if bench.reused else 'built'} {bench.root} in {timings['benchmark']:.0f} s: "
         + ", ".join(f"{k} {v.get('real', 0)} real + {sum(n for g, n in v.items() if g != 'real')} generated"
                     for k, v in counts.items()))
    splits = {name: bench.samples(name) for name in ("train", "val", *TEST_SPLITS)}

    cache_dir = _demo_cache_dir(cache_root)
    retrospection_cache = cache_dir / "retrospection"
    feature_cache = cache_dir / "features"
    t0 = time.perf_counter()
    perturbed = {spec: _perturbed_samples(splits["test_generators"], spec, cache_dir / "perturbed" / bench.key)
                 for spec in ROBUSTNESS}
    timings["perturb"] = time.perf_counter() - t0

    predictions: dict[str, dict[str, list[dict[str, Any]]]] = {split: {} for split in TEST_SPLITS}
    robustness: dict[str, dict[str, dict[str, Any]]] = {}
    described: dict[str, Any] = {}
    best_paths: dict[str, str] = {}
    training: dict[str, list[dict[str, Any]]] = {}
    evidence_detector: HRRDetector | None = None
    for i, name in enumerate(detectors):
        config = demo_detector_config(name, settings, feature_cache)
        described[name] = _describe(config)
        training[name] = []
        for seed in settings.seeds:
            _log(f"[2/4] {name} seed {seed} ({i + 1}/{len(detectors)}): train, then score the test splits ...")
            t0 = time.perf_counter()
            train_config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                                       seed=seed, early_stopping_patience=0, log_every=10)
            seed_everything(seed)
            model = HRRDetector(config)
            data = {split: _dataset(model, splits[split], train=split == "train", seed=seed,
                                    retrospection_cache=retrospection_cache) for split in ("train", "val")}
            run_dir = out_dir / "detectors" / name / f"seed{seed}"
            result = fit(model, data["train"], data["val"], train_config, run_dir, device=device, resume=False,
                         progress=progress,
                         run_config={"detector": config.to_dict(), "train": train_config.to_dict(),
                                     "data": {"wild_benchmark": str(bench.root)}})
            timings[f"train_{name}_seed{seed}"] = time.perf_counter() - t0
            best = load_detector(run_dir / "best", device=device)
            training[name].append({"seed": seed, "best_epoch": result.best_epoch, "best_val_ap": result.best_ap,
                                   "seconds": round(timings[f"train_{name}_seed{seed}"], 2)})
            t0 = time.perf_counter()
            to_score = {split: splits[split] for split in TEST_SPLITS}
            if seed == settings.seeds[0]:
                best_paths[name] = str(run_dir / "best")
                evidence_detector = best if name == REFERENCE else evidence_detector
                to_score.update(perturbed)
            for split, samples in to_score.items():
                dataset = _dataset(best, samples, train=False, seed=seed, retrospection_cache=retrospection_cache)
                pred = predict_dataset(best, dataset, batch_size=settings.batch_size, device=device,
                                       progress=progress, desc=f"{name}:{split}")
                pred["threshold"] = float(best.config.threshold)
                if split in TEST_SPLITS:
                    predictions[split].setdefault(name, []).append(pred)
                else:
                    robustness.setdefault(name, {})[split] = pred
            timings[f"eval_{name}_seed{seed}"] = time.perf_counter() - t0
        aucs = [_auc(p) for p in predictions["test_generators"][name]]
        _log(f"      {name}: test_generators AUC per seed " + ", ".join(f"{a:.3f}" for a in aucs))

    _log("[3/4] statistics ...")
    t0 = time.perf_counter()
    comparisons = {split: compare_detectors(predictions[split], reference=REFERENCE, n_boot=settings.n_boot)
                   for split in TEST_SPLITS}
    robust_rows = _robustness_rows(predictions["test_generators"], robustness)
    timings["statistics"] = time.perf_counter() - t0

    _log("[4/4] report ...")
    t0 = time.perf_counter()
    figures = [plot_roc_curves(predictions, comparisons, out_dir / "roc.png", titles=TEST_SPLITS).name]
    for split in TEST_SPLITS:
        figures.append(plot_generator_heatmap(comparisons[split], out_dir / f"generators_{split}.png",
                                              title=TEST_SPLITS[split]).name)
    if evidence_detector is not None:
        figures += _evidence_figure(evidence_detector, splits["test_generators"], out_dir)
    scores_csv = write_demo_scores(predictions, out_dir / "scores.csv")
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    payload = {
        "command": "hrrkit demo" + (" --quick" if quick else ""),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(device),
        "mode": "quick" if quick else "full",
        "settings": {**asdict(settings), "seeds": list(settings.seeds)},
        "benchmark": {"root": str(bench.root), "reused": bench.reused, "counts": counts, "key": bench.key},
        "detectors": described,
        "training": training,
        "results": comparisons,
        "robustness": robust_rows,
        "best_detectors": best_paths,
        "figures": figures,
        "scores_csv": scores_csv.name,
        "timings_s": timings,
    }
    atomic_write_json(out_dir / "report.json", payload)
    tables = {split: format_comparison_table(comparisons[split]) for split in TEST_SPLITS}
    atomic_write_text(out_dir / "report.md", _markdown(payload, tables))
    print()
    for split, table in tables.items():
        print(f"{TEST_SPLITS[split]} ({split}):")
        print(table)
        print()
    print(f"report: {out_dir / 'report.md'}  ({timings['total']:.0f} s)")
    print(f"try the HRR detector on your images: hrrkit detect PATH --model {best_paths[REFERENCE]}")
    return payload


def _demo_cache_dir(cache_root: str | Path | None) -> Path:
    """Where the demo keeps what it computes once (retrospected pairs, frozen features, perturbed copies):
    beside the benchmark builds, so a rerun reuses them and deleting ``$HRRKIT_CACHE`` makes it cold."""
    from hrrkit.datasets.wild import default_wild_root

    return (Path(cache_root) if cache_root else default_wild_root().parent) / "demo-cache"


def _perturbed_samples(samples, spec: str, folder: Path):
    """The samples after a delivery chain (``hrrkit eval --perturb`` spec), written once as PNG files
    (so the cached retrospection and features apply to them like to any image)."""
    import dataclasses
    import random

    from PIL import Image

    from hrrkit.eval.perturb import parse_perturbations
    from hrrkit.utils.atomic import atomic_path

    (perturbation,) = parse_perturbations([spec])
    out = []
    target = folder / spec.replace(":", "-")
    for sample in samples:
        path = target / f"{sample.label}-{sample.path.parent.name}-{sample.path.stem}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(sample.path) as img:
                changed = perturbation(img.convert("RGB"), random.Random(sample.path.name))
            with atomic_path(path) as tmp:
                changed.save(tmp, format="PNG")
        out.append(dataclasses.replace(sample, path=path))
    return out


def _auc(pred: dict[str, Any]) -> float:
    from hrrkit.eval.metrics import roc_auc

    return roc_auc(pred["labels"], pred["scores"])


def _robustness_rows(clean: dict[str, list[dict[str, Any]]], perturbed: dict[str, dict[str, dict[str, Any]]]):
    """AUC of seed 0 on ``test_generators`` as delivered (clean) and after each chain."""
    rows = {}
    for name, by_spec in perturbed.items():
        rows[name] = {"clean": _auc(clean[name][0]), **{spec: _auc(pred) for spec, pred in by_spec.items()}}
    return rows


def write_demo_scores(predictions: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> Path:
    """One row per (split, detector, seed index, image): the scores every report number comes from."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "detector", "seed_index", "path", "label", "generator", "score", "threshold"])
        for split, by_detector in predictions.items():
            for name, seeds in by_detector.items():
                for k, pred in enumerate(seeds):
                    for p, y, g, s in zip(pred["paths"], pred["labels"], pred["generators"], pred["scores"]):
                        writer.writerow([split, name, k, p, int(y), g or "", repr(float(s)), pred["threshold"]])
    return path


def _machine(device: torch.device) -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{device}, {cores} cores ({cpu}), torch {torch.__version__}"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _markdown(payload: dict[str, Any], tables: dict[str, str]) -> str:
    settings = payload["settings"]
    counts = payload["benchmark"]["counts"]
    lines = [
        "# hrrkit demo: HRR and baselines on real generators' images",
        "",
        f"`{payload['command']}` on {payload['date']}, {payload['machine']}; "
        f"{payload['timings_s']['total']:.0f} s. Every number below was measured in this run; "
        f"`{payload['scores_csv']}` holds every score it comes from.",
        "",
        "## Data",
        "",
        "| split | real | generated | generators |",
        "|---|---:|---:|---:|",
        *[f"| {split} | {c.get('real', 0)} | {sum(n for g, n in c.items() if g != 'real')} | "
          f"{len([g for g in c if g != 'real'])} |" for split, c in counts.items()],
        "",
        "Training and validation fakes are regenerations of the training photographs; no real generator's "
        "output is seen before the test. Every image went through the same final chain (size, WebP history, "
        "PNG), so size and format tell nothing (docs/wild_benchmark_v1.md).",
        "",
        "## Detectors",
        "",
        "| detector | retrospector | backbone input | backbone | scales | head | augment |",
        "|---|---|---|---|---|---|---|",
        *[f"| {name} | {d['retrospector']} | {d['backbone_input']} | {d['backbone']} | "
          f"{', '.join(f'{s:g}' for s in d['scales'])} | {d['head']} | {d['augment']} |"
          for name, d in payload["detectors"].items()],
        "",
        f"Same for all: {settings['epochs']} epochs, batch {settings['batch_size']}, AdamW lr {settings['lr']}, "
        f"seeds {settings['seeds']}, the epoch with the best validation AP kept, threshold 0.5 on the probability. "
        + ("The pretrained backbone is frozen for every detector (features computed once per image): "
           "DIRE and CNNSpot fine-tune theirs, which does not fit a 10-minute CPU budget." if settings["frozen_backbone"] else ""),
        "",
    ]
    for split, table in tables.items():
        comp = payload["results"][split]
        lines += [
            f"## {TEST_SPLITS[split]} (`{split}`: {comp['n_real']} real, {comp['n_fake']} generated)",
            "",
            "Each cell: mean over training seeds [95 % bootstrap interval over images] ±std over seeds. "
            f"ΔAUC: {comp['reference']} minus the row's detector, paired bootstrap over the same images; "
            "\"no significant difference\" means its interval contains 0.",
            "",
            table,
            "",
            _verdict_sentence(comp),
            "",
        ]
    lines += ["## Figures", ""]
    for fig in payload["figures"]:
        lines += [f"![{fig}]({fig})", ""]
    lines += [
        "## Delivery robustness (`test_generators`, seed 0, ROC-AUC)",
        "",
        "| detector | as delivered | " + " | ".join(ROBUSTNESS) + " |",
        "|---|---:|" + "---:|" * len(ROBUSTNESS),
        *[f"| {name} | {_fmt(r['clean'])} | " + " | ".join(_fmt(r[s]) for s in ROBUSTNESS) + " |"
          for name, r in payload["robustness"].items()],
        "",
        "## What this can and cannot tell",
        "",
        "The test fakes are one or two thumbnails per generator from ComfyUI's template package, and the test "
        "reals are crops of three held-out photographs: the intervals are wide, per-generator numbers rest on one "
        "or two images, and the content of the two classes differs (any photograph vs whatever the templates "
        "show). The benchmark can show whether a detector trained on content-matched regenerations transfers to "
        "real generators at all, and compare detectors trained identically; it cannot rank close detectors or "
        "stand in for a large benchmark (GenImage, DiffusionForensics), for which see examples/.",
        "",
        "## Timings (s)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in payload["timings_s"].items()],
        "",
    ]
    return "\n".join(lines)


def _verdict_sentence(comp: dict[str, Any]) -> str:
    ref = comp["reference"]
    groups: dict[str, list[str]] = {}
    for name, v in comp["versus_reference"].items():
        groups.setdefault(v["verdict"], []).append(name)
    parts = []
    if groups.get("no significant difference"):
        parts.append(f"no significant difference in AUC between {ref} and {', '.join(groups['no significant difference'])}")
    if groups.get(f"{ref} higher"):
        parts.append(f"{ref} is significantly higher than {', '.join(groups[f'{ref} higher'])}")
    if groups.get(f"{ref} lower"):
        parts.append(f"{ref} is significantly lower than {', '.join(groups[f'{ref} lower'])}")
    return ("On these images: " + "; ".join(parts) + ".") if parts else ""


def _evidence_figure(detector: HRRDetector, samples, out_dir: Path, count: int = 4) -> list[str]:
    """A few test images (2 real, 2 generated) and, per scale, where the logit came from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrrkit.data.io import load_image
    from hrrkit.eval.evidence import MAPS_UNIT

    picked = [s for s in samples if s.label == 0][: count // 2] + [s for s in samples if s.label == 1][: count // 2]
    if not picked:
        return []
    images = [load_image(s.path) for s in picked]
    preds = detector.predict(images, with_maps=True)
    scales = list(preds[0]["maps"])
    fig, axes = plt.subplots(len(picked), 1 + len(scales), figsize=(2.2 * (1 + len(scales)) + 0.8, 2.3 * len(picked)),
                             squeeze=False)
    limit = max(float(np.abs(m).max()) for p in preds for m in p["maps"].values()) or 1.0
    shown = None
    for row, (sample, pred) in enumerate(zip(picked, preds)):
        canvas = pred["canvas"]
        extent = (0, canvas.shape[1], canvas.shape[0], 0)
        axes[row][0].imshow(canvas)
        truth = "generated" if sample.label == 1 else "real"
        origin = f" ({sample.generator})" if sample.generator else ""
        axes[row][0].set_title(f"{truth}{origin}\nscore {pred['score']:.2f}", fontsize=7)
        for col, scale in enumerate(scales, start=1):
            axes[row][col].imshow(canvas.mean(-1), cmap="gray", extent=extent)
            shown = axes[row][col].imshow(pred["maps"][scale], cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.65,
                                          extent=extent, interpolation="bilinear")
            axes[row][col].set_title(f"scale {scale}: {pred['scale_scores'][scale]:.2f}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("HRR evidence: red pushes the score towards generated, blue towards real", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    bar.set_label(MAPS_UNIT, fontsize=6)
    with atomic_path(out_dir / "evidence.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return ["evidence.png"]
