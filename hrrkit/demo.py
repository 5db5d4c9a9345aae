"""``hrrkit demo``: the shipped default's recipe, HRR's ablations and the baselines on wild v2, offline, on a CPU.

1. build (or reuse) wild v2 (:mod:`hrrkit.datasets.wild_v2`, ``WildV2Config(folds=5)``, seed 0: the build
   the default detector was chosen and trained on, so the caches are shared): photographs from photo
   packages vs real generators' outputs, families and photo packages split into train / val / test;
2. run every frozen front end once per image and view (:func:`hrrkit.train.frozen.describe_together`,
   cached on disk; detectors whose front ends agree share them, and the DINOv2 front ends share one ViT
   pass per view, :func:`hrrkit.models.dinov2.shared_trunk`) — train with 2 ``delivery`` copies per
   image (drawn once with seed 0, shared by every detector and seed), val, test, and the text-to-image
   test group after three delivery chains;
3. per detector: fit the head (:func:`hrrkit.train.frozen.fit_head`, epoch chosen on val) once — it
   starts from zero and trains full batch on fixed descriptors, so every seed gives the same head —
   calibrate the threshold on the val reals at 5 % false-positive rate, save ``detectors/<name>/seed<k>/``;
   NPR (a CNN from scratch) trains with the regular trainer on the same images, once per seed;
4. score the test split once and write ``runs/demo/``: ``report.md`` / ``report.json`` (per report group
   AUC, AP, TPR at 1 % and 5 % FPR with bootstrap intervals, seed mean ± std and the paired verdict vs
   ``hrr_dino``; the calibrated threshold's false-positive rate on the held-out photo packages; delivery
   robustness; timings), ``scores.csv`` (one row per split, detector, seed and image: every number of the
   report can be recomputed from it), ``roc.png``, ``families.png`` and ``evidence.png``.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrrkit.eval.comparison import compare_detectors, format_comparison_table, plot_generator_heatmap, plot_roc_curves
from hrrkit.eval.metrics import calibrate_threshold, roc_auc
from hrrkit.models.config import DetectorConfig
from hrrkit.models.detector import HRRDetector
from hrrkit.models.presets import preset_config, preset_descriptions
from hrrkit.train.frozen import FrozenFitConfig
from hrrkit.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

#: The detectors of a full run, in report order: the shipped default's recipe, its ablations, the baselines.
DETECTORS = ("hrr_dino", "hrr_dino_no_msr", "hrr_dino_afr", "hrr_dino_multiscale", "univfd", "cnnspot", "npr")
#: Detectors that retrospect every image with the diffusion model (their front end measured 1.5x hrr_dino's
#: CPU time, docs/design.md): beyond the 10-minute budget, added with ``--detectors``.
RESIDUAL_DETECTORS = ("hrr_dino_residual", "dire")
#: ``--quick``: the default's recipe, its AFR-head variant (same front end), UnivFD (its CLS tokens come from
#: hrr_dino's ViT pass), a frozen CNN and NPR.
QUICK_DETECTORS = ("hrr_dino", "hrr_dino_afr", "univfd", "cnnspot", "npr")
#: The detector every other one is compared with (paired bootstrap of the AUC difference).
REFERENCE = "hrr_dino"
#: Report groups: each group's generated test images against every real test image.
GROUPS = ("text-to-image", "edit", "video", "upscale")
#: Delivery chains (``hrrkit eval --perturb`` specs) for the robustness table, on :data:`ROBUSTNESS_GROUP`.
ROBUSTNESS = ("webp:75", "jpeg:75", "downscale-then-jpeg:0.5")
ROBUSTNESS_GROUP = "text-to-image"
#: Detectors whose descriptor is a slice of another's: ``{detector: ((source detector, scale), ...)}``, the
#: first source present in the run is used. hrr_dino's (and hrr_dino_afr's) descriptor is hrr_dino_multiscale's
#: scale-1 descriptor; hrr_dino_no_msr's plain token mean at scale 1 is the mean half (the first
#: ``descriptor_dim`` columns) of the style statistics at scale 1 — the same numbers, so no backbone pass
#: runs twice. Each run checks the slice against the detector's own front end on a few training images
#: and describes in full if it differs.
DERIVED_FRONT_ENDS = {
    "hrr_dino": (("hrr_dino_multiscale", 1.0),),
    "hrr_dino_afr": (("hrr_dino_multiscale", 1.0),),
    "hrr_dino_no_msr": (("hrr_dino_multiscale", 1.0), ("hrr_dino", 1.0), ("hrr_dino_afr", 1.0)),
}
#: The false-positive rate the threshold is calibrated for, on the val reals.
TARGET_FPR = 0.05
METRICS = ("roc_auc", "ap", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr")


@dataclass(frozen=True)
class DemoSettings:
    """How much the demo trains: the same for every detector.

    ``seeds``: NPR's training seeds (the tables show mean ± std over them; a frozen head is fitted once, with
    the first: every seed gives the same zero-initialised full-batch fit); ``copies``:
    ``delivery``-augmented copies per training image besides the file itself (drawn once with seed 0 and
    shared by every detector and seed); ``head_epochs``: full-batch epochs of a frozen detector's head;
    ``npr_epochs`` / ``npr_batch_size`` / ``npr_lr``: NPR's CNN from scratch (the regular trainer);
    ``n_boot``: bootstrap replicates of the intervals.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    copies: int = FrozenFitConfig.copies
    # the shipped default's schedule (scripts/ship_default_detector.py uses FrozenFitConfig's defaults too),
    # so the demo's hrr_dino seed 0 is the shipped head
    head_epochs: int = FrozenFitConfig.epochs
    npr_epochs: int = 6
    npr_batch_size: int = 32
    npr_lr: float = 2e-3
    n_boot: int = 1000


FULL_SETTINGS = DemoSettings()
QUICK_SETTINGS = DemoSettings(seeds=(0,), copies=1, npr_epochs=1, n_boot=200)


def demo_detector_config(name: str) -> DetectorConfig:
    """The preset ``name`` as the demo trains it: the preset itself, except that a pretrained
    EfficientNet backbone (CNNSpot, DIRE) is frozen so that only its head trains (fine-tuning does not
    fit the CPU budget; the report says so). ``npr`` trains its CNN from scratch."""
    config = preset_config(name)
    options = config.backbone.options
    if options.get("pretrained") and not options.get("frozen"):
        config = config.replace(**{"backbone.options": {**options, "frozen": True}})
    return config


def is_frozen(config: DetectorConfig) -> bool:
    """Whether everything before the head is fixed (a pretrained frozen backbone): head-only training."""
    return bool(config.backbone.options.get("frozen"))


def describe_detector(config: DetectorConfig) -> dict[str, Any]:
    """What a reader needs to know of a detector: retrospector, backbone, input, head, scales."""
    retro = config.retrospector
    backbone = config.backbone
    extras = [f"{k}={v}" for k, v in backbone.options.items() if k in ("blocks", "tokens", "out_index")]
    return {
        "retrospector": "none" if retro.kind == "none" else f"{retro.kind}" + (f" ({retro.path})" if retro.path else ""),
        "backbone_input": retro.input if retro.kind != "none" else "image",
        "backbone": backbone.name + (f" ({', '.join(extras)})" if extras else "")
        + (" frozen" if backbone.options.get("frozen") else " trained"),
        "scales": list(config.rescale.scales) if config.rescale.enabled else [1.0],
        "style_statistics": bool(config.style.enabled),
        "head": config.head.kind,
        "training": "head on cached descriptors" if is_frozen(config) else "whole network (trainer)",
    }


# ------------------------------------------------------------------------------------------- progress


class OverallProgress:
    """One line per stage for the whole run: ``demo [k/N] what | elapsed | ETA``.

    Each stage carries a rough cost estimate (seconds on 2 idle cores); the ETA scales the remaining
    estimate by how fast the finished stages went against theirs."""

    def __init__(self, stages: Sequence[tuple[str, float]], *, started: float | None = None) -> None:
        self.stages = list(stages)
        self.started = time.perf_counter() if started is None else started
        self.done = 0

    def begin(self, label: str) -> None:
        k = self.done
        if k >= len(self.stages):
            raise RuntimeError(f"OverallProgress: stage {label!r} is beyond the {len(self.stages)} planned")
        elapsed = time.perf_counter() - self.started
        estimate_done = sum(w for _, w in self.stages[:k])
        remaining = sum(w for _, w in self.stages[k:])
        eta = remaining * (elapsed / estimate_done if estimate_done > 0 else 1.0)
        print(f"demo [{k + 1}/{len(self.stages)}] {label} | elapsed {_mmss(elapsed)} | ETA {_mmss(eta)}", flush=True)

    def end(self) -> None:
        self.done += 1


def _mmss(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


# ------------------------------------------------------------------------------------------- data


@dataclass
class SplitData:
    """The manifest rows of one split (or one perturbed copy of a subset), with absolute paths."""

    name: str
    rows: list[dict[str, str]]
    paths: list[str]

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(r["label"]) for r in self.rows], dtype=np.int64)

    @property
    def weights(self) -> list[float]:
        return [float(r["weight"]) for r in self.rows]

    def column(self, key: str) -> np.ndarray:
        return np.array([r[key] for r in self.rows], dtype=object)


def _splits(bench) -> dict[str, SplitData]:
    out = {}
    for split in ("train", "val", "test"):
        rows = bench.records(split)
        out[split] = SplitData(split, rows, [str(bench.root / r["path"]) for r in rows])
    return out


def _perturbed(test: SplitData, spec: str, folder: Path) -> SplitData:
    """The test reals and :data:`ROBUSTNESS_GROUP` fakes after a delivery chain, written once as PNG
    (named by the image's SHA-256, so a rerun reuses them and the descriptor cache applies)."""
    import random

    from PIL import Image

    from hrrkit.eval.perturb import parse_perturbations

    (perturbation,) = parse_perturbations([spec])
    target = folder / spec.replace(":", "-")
    target.mkdir(parents=True, exist_ok=True)
    rows, paths = [], []
    for row, src in zip(test.rows, test.paths):
        if row["label"] == "1" and row["group"] != ROBUSTNESS_GROUP:
            continue
        path = target / f"{row['sha256'][:24]}.png"
        if not path.exists():
            with Image.open(src) as img:
                changed = perturbation(img.convert("RGB"), random.Random(row["sha256"]))
            with atomic_path(path) as tmp:
                changed.save(tmp, format="PNG")
        rows.append(row)
        paths.append(str(path))
    return SplitData(f"test|{spec}", rows, paths)


# ------------------------------------------------------------------------------------------- training


@dataclass
class Trained:
    """One detector and seed after training: its scores per scored split (aligned with that split's
    rows), the calibrated threshold and what training did."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    threshold: float = 0.5
    calibration: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    folder: str = ""


def _calibrate(detector: HRRDetector, val: SplitData, val_scores: np.ndarray) -> dict[str, Any]:
    """Set the detector's threshold to :data:`TARGET_FPR` on the val reals; returns the calibration."""
    cal = calibrate_threshold(val_scores[val.labels == 0], TARGET_FPR)
    calibration = {"target_fpr": cal.target_fpr, "achieved_fpr": cal.achieved_fpr, "n_real": cal.n_real,
                   "data": "wild v2 val reals (hrrkit demo)"}
    detector.config.threshold = float(cal.threshold)
    detector.config.calibration = calibration
    return calibration


def _train_frozen(name: str, detector: HRRDetector, descriptors: dict[str, Any], splits: dict[str, SplitData],
                  seed: int, settings: DemoSettings, folder: Path, progress: bool) -> Trained:
    from hrrkit.models.checkpoint import save_detector
    from hrrkit.train.frozen import FrozenFitConfig, fit_head, scores_of

    torch.manual_seed(seed)
    device = next(detector.msr.parameters()).device
    detector.head = detector.config.head.build(detector.descriptor_dim, detector.config.loss).to(device)
    fit_config = FrozenFitConfig(copies=settings.copies, augment="delivery", epochs=settings.head_epochs, seed=seed)
    result = fit_head(detector, descriptors["train"], descriptors["val"], fit_config, progress=progress)
    out = Trained(training={"seed": seed, "best_epoch": result.best_epoch, "val_auc": result.val_auc,
                            "val_ap": result.val_ap, "seconds": round(result.seconds, 2)})
    for split, desc in descriptors.items():
        if split != "train":
            out.scores[split] = scores_of(detector, desc.values).double().numpy()
    out.calibration = _calibrate(detector, splits["val"], out.scores["val"])
    out.threshold = detector.config.threshold
    save_detector(detector, folder, extra={"demo": {"detector": name, "seed": seed, **out.training}})
    out.folder = str(folder)
    return out


def _train_npr(name: str, config: DetectorConfig, splits: dict[str, SplitData], to_score: dict[str, SplitData],
               seed: int, settings: DemoSettings, folder: Path, device: torch.device, progress: bool) -> Trained:
    """A detector whose backbone trains (NPR's CNN from scratch): the regular trainer on the same images."""
    from hrrkit.data.layouts import Sample
    from hrrkit.eval.predict import predict_dataset
    from hrrkit.models.checkpoint import save_detector
    from hrrkit.models.detector import load_detector
    from hrrkit.train.config import TrainConfig
    from hrrkit.train.trainer import fit, seed_everything

    def samples(data: SplitData) -> list:
        return [Sample(path=Path(p), label=int(r["label"]), generator=r["family"] or None, split=data.name)
                for p, r in zip(data.paths, data.rows)]

    seed_everything(seed)
    model = HRRDetector(config)
    train_config = TrainConfig(epochs=settings.npr_epochs, batch_size=settings.npr_batch_size, lr=settings.npr_lr,
                               seed=seed, early_stopping_patience=0, log_every=10)
    started = time.perf_counter()
    result = fit(model, config.input.dataset(samples(splits["train"]), train=True, seed=seed),
                 config.input.dataset(samples(splits["val"]), train=False, seed=seed), train_config,
                 folder / "training", device=device, resume=False, progress=progress,
                 run_config={"detector": config.to_dict(), "train": train_config.to_dict()})
    best = load_detector(folder / "training" / "best", device=device)
    out = Trained(training={"seed": seed, "best_epoch": result.best_epoch, "val_ap": result.best_ap,
                            "seconds": round(time.perf_counter() - started, 2)})
    for split, data in to_score.items():
        pred = predict_dataset(best, config.input.dataset(samples(data), train=False), device=device,
                               progress=progress, desc=f"{name}:{split}")
        by_path = dict(zip(map(str, pred["paths"]), pred["scores"]))
        missing = [p for p in data.paths if p not in by_path]
        if missing:
            raise RuntimeError(f"{name}: {len(missing)} images of {split} were not scored, e.g. {missing[0]}")
        out.scores[split] = np.array([by_path[p] for p in data.paths], dtype=np.float64)
    out.calibration = _calibrate(best, splits["val"], out.scores["val"])
    out.threshold = best.config.threshold
    save_detector(best, folder, extra={"demo": {"detector": name, "seed": seed, **out.training}})
    out.folder = str(folder)
    return out


# ------------------------------------------------------------------------------------------- the run


def default_demo_cache() -> Path:
    """Where the demo keeps what it computes once (descriptors, perturbed copies): ``<hrrkit cache>/demo``."""
    from hrrkit.utils.cache import cache_root

    return cache_root() / "demo"


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    quick: bool = False,
    device: str | torch.device = "cpu",
    cache_root: str | Path | None = None,
    detectors: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    progress: bool = True,
    settings: DemoSettings | None = None,
) -> dict[str, Any]:
    """Run the demo; returns the report payload (also written to ``out_dir/report.json``).

    ``cache_root``: parent of the wild v2 builds (``<cache_root>/wild-v2``) and the demo's caches
    (``<cache_root>/demo``); default hrrkit's cache. ``detectors``: preset names (default
    :data:`DETECTORS`, :data:`QUICK_DETECTORS` with ``quick``); :data:`REFERENCE` is always included.
    """
    from hrrkit.datasets.wild_v2 import WildV2Config, build_wild_v2, default_wild_v2_root
    from hrrkit.train.frozen import front_end_fingerprint

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    settings = settings or (QUICK_SETTINGS if quick else FULL_SETTINGS)
    if seeds is not None:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {list(seeds)}")
        settings = DemoSettings(**{**asdict(settings), "seeds": tuple(int(s) for s in seeds)})
    detectors = tuple(detectors or (QUICK_DETECTORS if quick else DETECTORS))
    known = set(preset_descriptions())
    unknown = [d for d in detectors if d not in known]
    if unknown:
        raise ValueError(f"unknown detector(s) {unknown}; the presets are {sorted(known)}")
    if REFERENCE not in detectors:
        detectors = (REFERENCE, *detectors)
    detectors = tuple(dict.fromkeys(detectors))
    timings: dict[str, float] = {}

    print(f"demo: wild v2 ({'quick' if quick else 'full'} build, folds 5, seed 0) ...", flush=True)
    t0 = time.perf_counter()
    bench_root = Path(cache_root) / "wild-v2" if cache_root else default_wild_v2_root()
    bench = build_wild_v2(root=bench_root, seed=0, quick=quick, config=WildV2Config(folds=5), progress=progress)
    timings["benchmark"] = time.perf_counter() - t0
    counts = bench.counts()
    print(f"demo: {'reused' if bench.reused else 'built'} {bench.root} in {timings['benchmark']:.0f} s: "
          + "; ".join(f"{k} {v.get('real', 0)} real + {sum(n for g, n in v.items() if g != 'real')} generated"
                      for k, v in counts.items()), flush=True)
    cache_dir = Path(cache_root) / "demo" if cache_root else default_demo_cache()
    splits = _splits(bench)
    t0 = time.perf_counter()
    perturbed = {spec: _perturbed(splits["test"], spec, cache_dir / "perturbed" / bench.key) for spec in ROBUSTNESS}
    timings["perturb"] = time.perf_counter() - t0
    scored = {"val": splits["val"], "test": splits["test"], **{d.name: d for d in perturbed.values()}}

    configs = {name: demo_detector_config(name) for name in detectors}
    models = {name: HRRDetector(configs[name]).to(device) for name in detectors if is_frozen(configs[name])}
    derived: dict[str, tuple[str, int]] = {}
    for name, candidates in DERIVED_FRONT_ENDS.items():
        for source, scale in candidates if name in models else ():
            scales = list(configs[source].rescale.scales) if source in models else []
            if source not in derived and scale in scales:
                derived[name] = (source, scales.index(scale))
                break
    front_ends: dict[str, list[str]] = {}
    for name, model in models.items():
        if name not in derived:
            front_ends.setdefault(front_end_fingerprint(model), []).append(name)

    members = {names[0]: names for names in front_ends.values()}  # one model per front end, and who shares it
    sources = {first: names + [d for d, (src, _) in derived.items() if src in names] for first, names in members.items()}
    trunks = _trunk_groups({name: models[name] for name in sources})
    n_scored = sum(len(d.rows) for d in scored.values())
    n_describe = len(splits["train"].rows) * (settings.copies + 1) + n_scored
    # the whole run's stages with rough costs (s on 2 idle cores, measured 2026-12-07) for the overall ETA
    stages: list[tuple[str, float]] = []
    if sources:
        shared = [" and ".join("+".join(sources[n]) for n in group) for group in trunks if len(group) > 1]
        stages.append((f"front ends of {', '.join('+'.join(v) for v in sources.values())}: describe {n_describe} "
                       "images and copies" + (f" (one ViT pass per view for {'; '.join(shared)})" if shared else ""),
                       _describe_cost(configs, trunks, n_describe)))
    seeds_of = {name: _seeds_of(configs[name], settings, models.get(name)) for name in detectors}
    for name in detectors:
        for seed in seeds_of[name]:
            # NPR measured 34 s a seed: 6 epochs over 281 images, then 682 images scored
            cost = (0.015 * settings.npr_epochs * len(splits["train"].rows) + 0.022 * n_scored
                    if not is_frozen(configs[name]) else 1.0)
            stages.append((f"{name} seed {seed}: " + ("fit the head" if is_frozen(configs[name]) else "train"), cost))
    stages.append(("report: statistics and figures", 15.0))
    overall = OverallProgress(stages, started=started)

    descriptors: dict[str, dict[str, Any]] = {}
    shared_passes: dict[str, dict[str, int]] = {}
    if sources:
        overall.begin(stages[overall.done][0])
        t0 = time.perf_counter()
        from contextlib import ExitStack

        from hrrkit.models.dinov2 import shared_trunk

        with ExitStack() as stack:
            for group in trunks:
                if len(group) > 1:
                    shared_passes["+".join(group)] = stack.enter_context(
                        shared_trunk([models[n].msr.backbone for n in group]))
            # trunk sharers are adjacent, so each batch meets the passes its first sharer left
            order = [n for group in trunks for n in group]
            described = _describe_splits([models[n] for n in order], splits, scored, settings, cache_dir, progress,
                                         "front ends")
        shared_passes = {k: dict(v) for k, v in shared_passes.items()}
        for source, desc in zip(order, described):
            for name in members[source]:
                descriptors[name] = desc
            for name, (src, scale_index) in derived.items():
                if src == source:
                    descriptors[name] = (_derived_descriptors(models[name], desc, scale_index, splits["train"])
                                         or _describe_splits([models[name]], splits, scored, settings, cache_dir,
                                                             progress, name)[0])
        timings["describe_front_ends"] = time.perf_counter() - t0
        overall.end()

    trained: dict[str, list[Trained]] = {}
    for name in detectors:
        trained[name] = []
        for seed in seeds_of[name]:
            overall.begin(stages[overall.done][0])
            t0 = time.perf_counter()
            folder = out_dir / "detectors" / name / f"seed{seed}"
            if name in models:
                result = _train_frozen(name, models[name], descriptors[name], splits, seed, settings, folder, progress)
            else:
                result = _train_npr(name, configs[name], splits, scored, seed, settings, folder, device, progress)
            trained[name].append(result)
            timings[f"train_{name}_seed{seed}"] = time.perf_counter() - t0
            overall.end()
        aucs = [_group_auc(splits["test"], t.scores["test"], ROBUSTNESS_GROUP) for t in trained[name]]
        print(f"demo: {name} test {ROBUSTNESS_GROUP} AUC per seed " + ", ".join(f"{a:.3f}" for a in aucs), flush=True)

    overall.begin(stages[overall.done][0])
    t0 = time.perf_counter()
    scores_csv = write_demo_scores(scored, trained, bench.root, out_dir / "scores.csv")
    payload = summarize(scored, trained, settings)
    payload["calibration"] = {name: [t.calibration for t in runs] for name, runs in trained.items()}
    payload["training"] = {name: [t.training for t in runs] for name, runs in trained.items()}
    figures = _figures(payload, scored, trained, out_dir)
    if REFERENCE in models:
        from hrrkit.models.detector import load_detector

        reference = load_detector(trained[REFERENCE][0].folder, device=device)
        figures += _evidence_figure(reference, splits["test"], out_dir)
    timings["report"] = time.perf_counter() - t0
    overall.end()
    timings["total"] = time.perf_counter() - started
    timings["total_after_benchmark"] = timings["total"] - timings["benchmark"]
    payload.update({
        "command": "hrrkit demo" + (" --quick" if quick else ""),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(device),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "mode": "quick" if quick else "full",
        "settings": {**asdict(settings), "seeds": list(settings.seeds), "target_fpr": TARGET_FPR,
                     "robustness": list(ROBUSTNESS), "robustness_group": ROBUSTNESS_GROUP},
        "benchmark": {"root": str(bench.root), "key": bench.key, "reused": bench.reused, "counts": counts,
                      "seconds": round(timings["benchmark"], 1)},
        "detectors": {name: describe_detector(configs[name]) for name in detectors},
        "front_ends": {"+".join(names): fp for fp, names in front_ends.items()},
        "shared_vit_passes": shared_passes,
        "derived_descriptors": {name: f"{source}, scale {configs[source].rescale.scales[i]:g}, first "
                                f"{models[name].descriptor_dim} columns" for name, (source, i) in derived.items()},
        "detector_folders": {name: [t.folder for t in runs] for name, runs in trained.items()},
        "figures": figures,
        "scores_csv": scores_csv.name,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    })
    atomic_write_json(out_dir / "report.json", payload)
    atomic_write_text(out_dir / "report.md", _markdown(payload))
    print()
    print(f"test ({payload['results']['all']['n_real']} real; generated per group in brackets), seed mean "
          "[95% bootstrap interval over images] ±std over seeds:")
    print(summary_table(payload))
    print()
    print(f"report: {out_dir / 'report.md'}  ({timings['total']:.0f} s, {timings['total_after_benchmark']:.0f} s "
          "after the benchmark)")
    print(f"try the demo's {REFERENCE} on your images: hrrkit detect PATH --model {trained[REFERENCE][0].folder}")
    return payload


def _seeds_of(config: DetectorConfig, settings: DemoSettings, model: HRRDetector | None = None) -> tuple[int, ...]:
    """The seeds a detector trains with: all of them for a network that trains (NPR); for a frozen detector's
    head, the first only when the head starts the same under every seed (hrrkit's heads start from zero):
    it is then fitted full batch on fixed descriptors, so every seed gives the same head
    (``tests/train/test_frozen.py`` checks it)."""
    if not is_frozen(config) or model is None:
        return tuple(settings.seeds)
    starts = []
    for seed in settings.seeds:
        torch.manual_seed(seed)
        starts.append(config.head.build(model.descriptor_dim, config.loss).state_dict())
    same = all(torch.equal(v, start[k]) for start in starts[1:] for k, v in starts[0].items())
    return tuple(settings.seeds[:1]) if same else tuple(settings.seeds)


def _trunk_groups(models: dict[str, HRRDetector]) -> list[list[str]]:
    """The front ends ``models`` (one model each) in groups whose frozen DINOv2 backbones can share one
    ViT pass (:func:`hrrkit.models.dinov2.trunk_identity`); every other front end is a group of one. The
    largest descriptor first in each group (any order gives the same numbers)."""
    from hrrkit.models.dinov2 import trunk_identity

    groups: dict[str, list[str]] = {}
    for name, model in models.items():
        identity = trunk_identity(model.msr.backbone)
        key = f"dinov2:{sorted(identity.items())}" if identity is not None else f"alone:{name}"
        groups.setdefault(key, []).append(name)
    return [sorted(g, key=lambda n: -models[n].descriptor_dim) for g in groups.values()]


def _describe_cost(configs: dict[str, DetectorConfig], trunks: list[list[str]], n_describe: int) -> float:
    """Rough seconds (2 idle cores) to describe ``n_describe`` images with these front ends: per image and
    unit of pixels (scale²) 0.07 s for a DINOv2 ViT-S/14 pass at 224 px, 0.011 s for an EfficientNet
    (measured 2026-12-07: 133 s for hrr_dino_multiscale's 1525 views at scales 0.5 + 1, 16 s for
    cnnspot's); a diffusion retrospector adds half; a trunk group pays for its largest scale set once."""
    def pixels(config: DetectorConfig) -> float:
        return sum(s * s for s in config.rescale.scales) if config.rescale.enabled else 1.0

    cost = 0.0
    for group in trunks:
        config = configs[group[0]]
        rate = 0.011 if config.backbone.name.startswith("efficientnet") else 0.07
        rate *= 1.5 if config.retrospector.kind != "none" else 1.0
        cost += n_describe * rate * max(pixels(configs[n]) for n in group)
    return cost


def _describe_splits(models: Sequence[HRRDetector], splits: dict[str, SplitData], scored: dict[str, SplitData],
                     settings: DemoSettings, cache_dir: Path, progress: bool, label: str) -> list[dict[str, Any]]:
    """Per model, ``{split: Descriptors}`` of the training images with their ``delivery`` copies and of every
    scored split (:func:`hrrkit.train.frozen.describe_together`: each image read once for all models)."""
    from hrrkit.train.frozen import describe_together

    train = splits["train"]
    per_split = {"train": describe_together(
        models, train.paths, train.labels.tolist(), weights=train.weights, copies=settings.copies, augment="delivery",
        seed=0, cache_dir=cache_dir / "descriptors", progress=progress, desc=f"{label}:train")}
    for split, data in scored.items():
        per_split[split] = describe_together(
            models, data.paths, data.labels.tolist(), weights=data.weights, copies=0, augment="delivery", seed=0,
            cache_dir=cache_dir / "descriptors", progress=progress, desc=f"{label}:{split}")
    return [{split: got[k] for split, got in per_split.items()} for k in range(len(models))]


def _derived_descriptors(model: HRRDetector, source: dict[str, Any], scale_index: int, train: SplitData,
                         check: int = 4) -> dict[str, Any] | None:
    """``model``'s descriptors as the first ``model.descriptor_dim`` columns of ``source``'s scale
    ``scale_index`` (see :data:`DERIVED_FRONT_ENDS`), after checking them against ``model``'s own front
    end on the first ``check`` training images; ``None`` (and a note) when they differ."""
    from hrrkit.train.frozen import Descriptors, describe

    dim = model.descriptor_dim

    def sliced(d: Descriptors) -> Descriptors:
        return Descriptors(d.values[:, scale_index: scale_index + 1, :dim].clone(), d.labels, d.weights, d.paths)

    own = describe(model, train.paths[:check], train.labels[:check].tolist(), progress=False)
    if torch.allclose(own.values, sliced(source["train"]).values[:check], rtol=1e-5, atol=1e-5):
        return {split: sliced(d) for split, d in source.items()}
    print(f"demo: {model.config.name}'s descriptors are not a slice of its source's; describing them in full",
          flush=True)
    return None


def _group_auc(test: SplitData, scores: np.ndarray, group: str) -> float:
    labels = test.labels
    mask = (labels == 0) | (test.column("group") == group)
    return roc_auc(labels[mask], scores[mask]) if (labels[mask] == 1).any() else math.nan


# ------------------------------------------------------------------------------------------- statistics


def _predictions(data: SplitData, trained: dict[str, list[Trained]], split: str, mask: np.ndarray,
                 *, seeds: slice = slice(None)) -> dict[str, list[dict[str, Any]]]:
    """``{detector: [prediction per seed]}`` in :func:`compare_detectors`' form on the rows ``mask``;
    the family stands in for the generator (per-family tables)."""
    paths = [p for p, keep in zip(data.paths, mask) if keep]
    labels = data.labels[mask]
    families = [f or None for f in data.column("family")[mask]]
    return {name: [{"paths": paths, "labels": labels, "generators": families, "scores": t.scores[split][mask],
                    "threshold": t.threshold} for t in runs[seeds]]
            for name, runs in trained.items()}


def summarize(scored: dict[str, SplitData], trained: dict[str, list[Trained]], settings: DemoSettings) -> dict[str, Any]:
    """Every number of the report from the scores: per report group (and all generated images) the
    comparison with intervals and verdicts, the calibrated threshold's false-positive rate on the test
    reals (overall and per photo package) and the delivery-robustness AUCs of seed 0."""
    test = scored["test"]
    labels, groups = test.labels, test.column("group")
    results: dict[str, Any] = {}
    for group in (*GROUPS, "all"):
        mask = (labels == 0) | ((groups == group) if group != "all" else (labels == 1))
        if not (labels[mask] == 1).any():
            continue
        results[group] = compare_detectors(_predictions(test, trained, "test", mask), reference=REFERENCE,
                                           metrics=METRICS, n_boot=settings.n_boot)
    reals = labels == 0
    packages = test.column("source_key")
    false_positives: dict[str, Any] = {}
    for name, runs in trained.items():
        per_seed = [float((t.scores["test"][reals] >= t.threshold).mean()) for t in runs]
        per_package = {}
        for package in sorted(set(packages[reals])):
            m = reals & (packages == package)
            per_package[package] = {"n": int(m.sum()),
                                    "fpr": float(np.mean([(t.scores["test"][m] >= t.threshold).mean() for t in runs]))}
        false_positives[name] = {"n_real": int(reals.sum()), "mean": float(np.mean(per_seed)),
                                 "std": float(np.std(per_seed)), "per_seed": per_seed, "per_package": per_package,
                                 "val_achieved": float(np.mean([t.calibration["achieved_fpr"] for t in runs]))}
    robustness: dict[str, dict[str, float]] = {}
    clean_mask = (labels == 0) | (groups == ROBUSTNESS_GROUP)
    for name, runs in trained.items():
        first = runs[0]
        row = {"as delivered": roc_auc(labels[clean_mask], first.scores["test"][clean_mask])}
        for split, data in scored.items():
            if split.startswith("test|"):
                row[split.split("|", 1)[1]] = roc_auc(data.labels, first.scores[split])
        robustness[name] = row
    return {"results": results, "false_positives": false_positives, "robustness": robustness}


def write_demo_scores(scored: dict[str, SplitData], trained: dict[str, list[Trained]], root: Path, path: Path) -> Path:
    """One row per (split, detector, seed, image): the scores every report number comes from. ``split`` is
    ``val``, ``test`` or ``test|<delivery chain>``; ``path`` is relative to the benchmark's folder (a
    perturbed copy keeps its original's path)."""
    columns = ("split", "detector", "seed", "path", "label", "group", "family", "generator", "source_key", "score",
               "threshold")
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for name, runs in trained.items():
            for t in runs:
                for split, data in scored.items():
                    if split not in t.scores:
                        continue
                    for row, score in zip(data.rows, t.scores[split]):
                        writer.writerow([split, name, t.training["seed"], row["path"], row["label"],
                                         row["group"] if row["label"] == "1" else "real", row["family"],
                                         row["generator"], row["source_key"], repr(float(score)), repr(t.threshold)])
    return path


# ------------------------------------------------------------------------------------------- report


def _figures(payload: dict[str, Any], scored: dict[str, SplitData], trained: dict[str, list[Trained]],
             out_dir: Path) -> list[str]:
    test = scored["test"]
    labels, groups = test.labels, test.column("group")
    groups_present = [g for g in GROUPS if g in payload["results"]]
    by_group = {g: _predictions(test, trained, "test", (labels == 0) | (groups == g)) for g in groups_present}
    figures = [plot_roc_curves(by_group, payload["results"], out_dir / "roc.png",
                               titles={g: f"test: {g}" for g in groups_present}).name]
    figures.append(plot_generator_heatmap(payload["results"]["all"], out_dir / "families.png",
                                          title="test, every generated family", generators_as_rows=True).name)
    return figures


def _machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{device}, {cores} cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def _mean_std(entry: dict[str, Any]) -> str:
    """``mean ±std`` over seeds, or the one value of a detector trained once."""
    return f"{entry['mean']:.3f}" + (f" ±{entry['std']:.3f}" if len(entry["per_seed"]) > 1 else "")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    counts = payload["benchmark"]["counts"]
    load = payload.get("load_average")
    timings = payload["timings_s"]
    columns = ("real", *GROUPS)
    once = [name for name, runs in payload["training"].items() if len(runs) == 1 and len(settings["seeds"]) > 1]
    shared = payload.get("shared_vit_passes") or {}
    lines = [
        "# hrrkit demo: the default's recipe, its ablations and the baselines on wild v2",
        "",
        f"`{payload['command']}` on {payload['date']}, {payload['machine']}"
        + (f", load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end" if load else "")
        + f"; {timings['total_after_benchmark']:.0f} s after the benchmark ({timings['benchmark']:.0f} s to build "
        f"or reuse it). Every number below was measured in this run; `{payload['scores_csv']}` holds every score "
        "it comes from.",
        "",
        "## Data (wild v2, `WildV2Config(folds=5)`, seed 0; docs/wild_benchmark.md)",
        "",
        "| split | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
        *[f"| {split} | " + " | ".join(str(c.get(k, 0)) for k in columns) + " |" for split, c in counts.items()],
        "",
        "Families and photo packages are split into train / val / test: no test family or photo package is seen "
        "in training or used for a choice. Every image went through the same final chain (224 px, one WebP "
        "encode, PNG), and the classes were matched on file size, brightness, sharpness and colourfulness.",
        "",
        "## Detectors",
        "",
        "| detector | retrospector | backbone input | backbone | scales | style statistics | head | training |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {d['retrospector']} | {d['backbone_input']} | {d['backbone']} | "
          f"{', '.join(f'{s:g}' for s in d['scales'])} | {'yes' if d['style_statistics'] else 'no'} | {d['head']} | "
          f"{d['training']} |" for name, d in payload["detectors"].items()],
        "",
        f"Seeds {settings['seeds']}: "
        + (f"{', '.join(once)} fitted once, with seed {settings['seeds'][0]} (a head that starts the same under every "
           "seed, trained full batch on fixed descriptors, comes out the same for every seed: its ±std would be 0 by "
           "construction); " if once else "")
        + "every other detector trains once per seed (NPR's seed draws its CNN's initialisation, batches and crops). "
        "Frozen detectors: the front end runs once per image and view "
        + (f"(one DINOv2 pass serves {', '.join(shared)}: "
           + ", ".join(f"{v['passes']} ViT calls computed, {v['reused']} answered from them" for v in shared.values())
           + ")" if any(v["passes"] for v in shared.values()) else "(this run found every descriptor cached)"
           if shared else "") + "; training images add "
        f"`delivery` copies (copies per image: {settings['copies']}; JPEG chain / WebP / downscale+JPEG, drawn once with seed 0 "
        f"and shared by every detector and seed); the head trains full batch for {settings['head_epochs']} epochs "
        "with the detector's own loss, keeping the epoch with the best val AUC. CNNSpot's and DIRE's EfficientNet "
        "is frozen here (their papers fine-tune it, which does not fit the CPU budget). NPR trains its CNN from "
        f"scratch with the regular trainer on the same images ({settings['npr_epochs']} epochs, batch "
        f"{settings['npr_batch_size']}, AdamW lr {settings['npr_lr']}, best val epoch). Every threshold is "
        f"calibrated on the val reals for {settings['target_fpr']:.0%} false-positive rate and stored in the "
        "detector's config (`detectors/<name>/seed<k>/`).",
        "",
    ]
    lines += ["## Summary (test split; AUC per report group, seed mean [95 % image-bootstrap interval] ±seed std)",
              "", summary_table(payload), ""]
    for group, comp in payload["results"].items():
        title = "all generated images" if group == "all" else group
        lines += [
            f"## Test: {title} ({comp['n_real']} real, {comp['n_fake']} generated)",
            "",
            "Each cell: mean over seeds [95 % bootstrap interval over images] ±std over seeds. ΔAUC: "
            f"{comp['reference']} minus the row's detector, paired bootstrap over the same images; \"no "
            "significant difference\" means its interval contains 0.",
            "",
            format_comparison_table(comp),
            "",
            _verdict_sentence(comp),
            "",
        ]
    fp = payload["false_positives"]
    packages = sorted({p for v in fp.values() for p in v["per_package"]})
    first = next(iter(fp.values())) if fp else {"per_package": {}}
    lines += [
        f"## False positives on the held-out photo packages (test reals, threshold for {settings['target_fpr']:.0%} "
        "FPR on val reals)",
        "",
        "| detector | val FPR (calibrated on) | test FPR mean ±std | " + " | ".join(
            f"{p} ({first['per_package'].get(p, {}).get('n', 0)})" for p in packages) + " |",
        "|---|---:|---:|" + "---:|" * len(packages),
        *[f"| {name} | {v['val_achieved']:.3f} | {_mean_std(v)} | "
          + " | ".join(_fmt(v["per_package"].get(p, {}).get("fpr")) for p in packages) + " |"
          for name, v in fp.items()],
        "",
        f"## Delivery robustness (test {settings['robustness_group']} vs test reals, seed {settings['seeds'][0]}, "
        "ROC-AUC)",
        "",
        "| detector | as delivered | " + " | ".join(settings["robustness"]) + " |",
        "|---|---:|" + "---:|" * len(settings["robustness"]),
        *[f"| {name} | {_fmt(r['as delivered'])} | " + " | ".join(_fmt(r.get(s)) for s in settings["robustness"])
          + " |" for name, r in payload["robustness"].items()],
        "",
        "## Figures",
        "",
        *[line for fig in payload["figures"] for line in (f"![{fig}]({fig})", "")],
        "## What this can and cannot tell",
        "",
        "The test split has a few hundred images from families and photo packages never seen in training: the "
        "intervals are wide, per-family cells rest on a handful of images (the count is in the row label), and a "
        "detector that wins only within its interval has not won. Training is head-only on frozen features "
        "(except NPR); the numbers are for this recipe at this budget, not for the papers' full training.",
        "",
        "## Timings (s)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in timings.items()],
        "",
    ]
    return "\n".join(lines)


def summary_table(payload: dict[str, Any]) -> str:
    """Markdown: one row per detector — what it is, test AUC per report group (seed mean [95 % image
    bootstrap interval] ±seed std), TPR at 5 % FPR on text-to-image, the false-positive rate of the
    val-calibrated threshold on the test reals, and the paired verdict against :data:`REFERENCE` on
    text-to-image. What the README and the console show."""
    from hrrkit.eval.comparison import _cell

    results = payload["results"]
    groups = [g for g in (*GROUPS, "all") if g in results]
    head = ("| detector | retrospector → backbone | " + " | ".join(
        f"{g} AUC ({results[g]['n_fake']})" for g in groups) + f" | {ROBUSTNESS_GROUP} TPR@5%FPR | test-real FPR"
        f" | vs {REFERENCE} ({ROBUSTNESS_GROUP}) |")
    rows = [head, "|---|---|" + "---:|" * (len(groups) + 2) + "---|"]
    t2i = results.get(ROBUSTNESS_GROUP)
    for name, d in payload["detectors"].items():
        cells = [_cell(results[g]["detectors"][name]["roc_auc"]) for g in groups]
        tpr = _fmt(t2i["detectors"][name]["tpr_at_5pct_fpr"]["mean"]) if t2i else "n/a"
        fp = payload["false_positives"][name]
        verdict = ("reference" if name == REFERENCE else t2i["versus_reference"].get(name, {}).get("verdict", "n/a")
                   ) if t2i else "n/a"
        rows.append(f"| {name} | {d['retrospector']} → {d['backbone']} | " + " | ".join(cells)
                    + f" | {tpr} | {_mean_std(fp)} | {verdict} |")
    return "\n".join(rows)


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


def _evidence_figure(detector: HRRDetector, test: SplitData, out_dir: Path, count: int = 4) -> list[str]:
    """A few test images (2 real, 2 text-to-image) and, per scale, where the logit came from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrrkit.data.io import load_image
    from hrrkit.eval.evidence import MAPS_UNIT

    reals = [i for i, r in enumerate(test.rows) if r["label"] == "0"][: count // 2]
    fakes = [i for i, r in enumerate(test.rows) if r["group"] == ROBUSTNESS_GROUP][: count // 2]
    picked = [test.rows[i] for i in reals + fakes]
    if not picked:
        return []
    images = [load_image(test.paths[i]) for i in reals + fakes]
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
        truth = "generated" if sample["label"] == "1" else "real"
        origin = f" ({sample['family']})" if sample["family"] else ""
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
