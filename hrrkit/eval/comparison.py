"""Compare detectors trained with several seeds on the same test images, with honest uncertainty.

Input: for one test split, ``{detector: [prediction of seed 0, seed 1, ...]}``, each prediction a dict
with ``paths``, ``labels``, ``scores`` (probability of generated), ``generators`` and ``threshold``
(the output of :func:`hrrkit.eval.predict.predict_dataset` plus the detector's threshold). Images are
aligned by path, so every detector and seed is scored on exactly the same images.

What comes out (:func:`compare_detectors`):

* per detector and metric: the **seed mean** of the point estimate, the **seed spread** (std, min,
  max), and a **95 % bootstrap interval over images** of the seed-mean metric (each replicate resamples
  the images once, stratified by class, and averages the metric over seeds);
* per detector, against a ``reference`` detector: the **paired bootstrap** interval of the AUC
  difference (same resampled images for both) and a verdict — ``"higher"``, ``"lower"`` or
  ``"no significant difference"`` — that the report prints instead of a ranking the data does not
  support;
* per generator: seed-mean ROC-AUC of each detector on that generator's fakes against all reals of the
  split, with the number of fakes (few per generator: read them as indications).

Figures: :func:`plot_roc_curves` and :func:`plot_generator_heatmap`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrrkit.eval.bootstrap import (
    BOOTSTRAP_METRICS,
    Interval,
    _percentile_interval,
    _replicate_values,
    bootstrap_indices,
    seed_summary,
)
from hrrkit.eval.metrics import roc_auc, roc_curve

__all__ = ["align_seed_predictions", "compare_detectors", "format_comparison_table", "plot_generator_heatmap",
           "plot_roc_curves"]

HEADLINE_METRICS = ("roc_auc", "ap", "acc", "tpr_at_5pct_fpr")
METRIC_TITLES = {"roc_auc": "AUC", "ap": "AP", "acc": "acc@thr", "tpr_at_5pct_fpr": "TPR@5%FPR",
                 "tpr_at_1pct_fpr": "TPR@1%FPR"}


def align_seed_predictions(predictions: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Stack every detector's seeds on the images all of them scored.

    Returns ``{"paths", "labels" (N,), "generators" (N,), "scores": {detector: (S, N)},
    "thresholds": {detector: (S,)}}``; images missing from any prediction are dropped (and counted
    in ``"dropped"``), so every comparison is on the same images.
    """
    if not predictions or any(len(seeds) == 0 for seeds in predictions.values()):
        raise ValueError("align_seed_predictions: every detector needs at least one seed's prediction")
    common: set[str] | None = None
    for seeds in predictions.values():
        for pred in seeds:
            paths = set(map(str, pred["paths"]))
            common = paths if common is None else common & paths
    first = next(iter(predictions.values()))[0]
    order = [str(p) for p in first["paths"] if str(p) in common]
    position = {p: i for i, p in enumerate(order)}
    lookup = {str(p): i for i, p in enumerate(first["paths"])}
    labels = np.asarray(first["labels"])[[lookup[p] for p in order]].astype(np.int64)
    generators = [first["generators"][lookup[p]] for p in order]
    scores: dict[str, np.ndarray] = {}
    thresholds: dict[str, np.ndarray] = {}
    for name, seeds in predictions.items():
        matrix = np.empty((len(seeds), len(order)), dtype=np.float64)
        for k, pred in enumerate(seeds):
            where = np.array([position.get(str(p), -1) for p in pred["paths"]])
            keep = where >= 0
            pred_labels = np.asarray(pred["labels"])[keep]
            if not np.array_equal(pred_labels, labels[where[keep]]):
                raise ValueError(f"{name} seed {k}: labels disagree with the other predictions for the same paths")
            matrix[k, where[keep]] = np.asarray(pred["scores"], dtype=np.float64)[keep]
        scores[name] = matrix
        thresholds[name] = np.array([float(p.get("threshold", 0.5)) for p in seeds])
    all_paths = {str(p) for seeds in predictions.values() for pred in seeds for p in pred["paths"]}
    return {"paths": order, "labels": labels, "generators": generators, "scores": scores,
            "thresholds": thresholds, "dropped": len(all_paths) - len(order)}


def _seed_mean_replicates(metric: str, labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray,
                          idx: np.ndarray) -> np.ndarray:
    reps = np.stack([_replicate_values(metric, labels, s, idx, float(t)) for s, t in zip(scores, thresholds)])
    return reps.mean(axis=0)


def compare_detectors(
    predictions: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    reference: str | None = None,
    metrics: Sequence[str] = HEADLINE_METRICS,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Seed-averaged metrics with bootstrap intervals, paired tests against ``reference``, per-generator AUC.

    Args:
        predictions: ``{detector: [prediction per training seed]}`` on one test split.
        reference: the detector the others are compared with (default: the first).
        metrics: names from :data:`hrrkit.eval.bootstrap.BOOTSTRAP_METRICS`.
        n_boot: bootstrap replicates (image resamples), shared by every detector.
        alpha: intervals are at level ``1 − alpha``.
        seed: seed of the resampling.

    Returns:
        a JSON-friendly dict: ``n_real``, ``n_fake``, ``detectors`` (per detector: ``seeds``, and per
        metric ``{"mean", "low", "high", "seed_std", "seed_min", "seed_max", "per_seed"}``),
        ``versus_reference`` (per detector: AUC difference interval and verdict) and ``generators``
        (per generator: ``n_fake`` and per detector the seed-mean AUC).
    """
    aligned = align_seed_predictions(predictions)
    labels = aligned["labels"]
    names = list(predictions)
    reference = reference or names[0]
    if reference not in predictions:
        raise ValueError(f"reference detector {reference!r} is not among {names}")
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(BOOTSTRAP_METRICS)}")
    both = 0 < int(labels.sum()) < labels.size
    idx = bootstrap_indices(labels, n_boot, seed) if labels.size else None
    detectors: dict[str, Any] = {}
    auc_reps: dict[str, np.ndarray] = {}
    for name in names:
        scores, thresholds = aligned["scores"][name], aligned["thresholds"][name]
        row: dict[str, Any] = {"seeds": int(scores.shape[0])}
        for metric in metrics:
            fn = BOOTSTRAP_METRICS[metric]
            per_seed = [float(fn(labels, s, float(t))) for s, t in zip(scores, thresholds)]
            spread = seed_summary(per_seed)
            value = spread["mean"]
            if idx is not None and (both or metric == "acc"):
                reps = _seed_mean_replicates(metric, labels, scores, thresholds, idx)
                if metric == "roc_auc":
                    auc_reps[name] = reps
                interval = _percentile_interval(value, reps, alpha)
            else:
                interval = Interval(value, math.nan, math.nan)
            row[metric] = {**interval.to_dict(), "mean": interval.to_dict()["value"],
                           "seed_std": spread["std"], "seed_min": spread["min"], "seed_max": spread["max"],
                           "per_seed": per_seed}
            row[metric].pop("value")
        detectors[name] = row
    versus: dict[str, Any] = {}
    if reference in auc_reps:
        ref_mean = detectors[reference]["roc_auc"]["mean"]
        for name in names:
            if name == reference or name not in auc_reps:
                continue
            diff = _percentile_interval(ref_mean - detectors[name]["roc_auc"]["mean"],
                                        auc_reps[reference] - auc_reps[name], alpha)
            verdict = ("no significant difference" if not diff.excludes(0.0)
                       else (f"{reference} higher" if diff.value > 0 else f"{reference} lower"))
            versus[name] = {"auc_difference": diff.to_dict(), "verdict": verdict}
    generators: dict[str, Any] = {}
    gens = np.array([g if g is not None else "" for g in aligned["generators"]], dtype=object)
    for gen in sorted({g for g, y in zip(gens, labels) if y == 1 and g}):
        mask = (labels == 0) | (gens == gen)
        entry: dict[str, Any] = {"n_fake": int(((gens == gen) & (labels == 1)).sum()), "auc": {}}
        for name in names:
            s = aligned["scores"][name][:, mask]
            entry["auc"][name] = float(np.mean([roc_auc(labels[mask], row) for row in s]))
        generators[gen] = entry
    return {
        "n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()), "dropped": aligned["dropped"],
        "reference": reference, "n_boot": n_boot, "alpha": alpha, "metrics": list(metrics),
        "detectors": detectors, "versus_reference": versus, "generators": generators,
    }


def _cell(entry: Mapping[str, Any], digits: int = 3) -> str:
    mean = entry.get("mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = f"{mean:.{digits}f}"
    if entry.get("low") is not None:
        text += f" [{entry['low']:.{digits - 1}f}, {entry['high']:.{digits - 1}f}]"
    if entry.get("seed_std"):
        text += f" ±{entry['seed_std']:.{digits - 1}f}"
    return text


def format_comparison_table(comparison: Mapping[str, Any], *, labels: Mapping[str, str] | None = None) -> str:
    """Markdown: one row per detector — each metric as ``seed mean [95 % image-bootstrap CI] ±seed std``,
    then the paired AUC difference to the reference and its verdict."""
    metrics = comparison["metrics"]
    ref = comparison["reference"]
    head = ("| detector | " + " | ".join(METRIC_TITLES.get(m, m) for m in metrics)
            + f" | ΔAUC vs {ref} [95% CI] | verdict |")
    sep = "|---|" + "---:|" * len(metrics) + "---:|---|"
    rows = [head, sep]
    for name, row in comparison["detectors"].items():
        shown = labels.get(name, name) if labels else name
        cells = [_cell(row[m]) for m in metrics]
        versus = comparison["versus_reference"].get(name)
        if versus is None:
            diff, verdict = "—", "reference" if name == ref else "n/a"
        else:
            d = versus["auc_difference"]
            diff = f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d["low"] is not None else "n/a"
            verdict = versus["verdict"]
        rows.append(f"| {shown} | " + " | ".join(cells) + f" | {diff} | {verdict} |")
    return "\n".join(rows)


def plot_roc_curves(
    by_split: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    comparisons: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    *,
    titles: Mapping[str, str] | None = None,
) -> Path:
    """One panel per split: each detector's ROC curve (seed 0), legend with seed-mean AUC and its CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrrkit.utils.atomic import atomic_path

    splits = list(by_split)
    fig, axes = plt.subplots(1, len(splits), figsize=(5.0 * len(splits), 4.6), squeeze=False)
    for ax, split in zip(axes[0], splits):
        comp = comparisons[split]
        for name, seeds in by_split[split].items():
            pred = seeds[0]
            labels = np.asarray(pred["labels"])
            if len(set(labels.tolist())) < 2:
                continue
            fpr, tpr, _ = roc_curve(labels, pred["scores"])
            auc = comp["detectors"][name]["roc_auc"]
            ax.plot(fpr, tpr, lw=1.4, label=f"{name}: AUC {_cell(auc)}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.7, label="chance")
        ax.set(title=(titles or {}).get(split, split) + f"\n({comp['n_real']} real, {comp['n_fake']} generated)",
               xlabel="false-positive rate (reals flagged)", ylabel="true-positive rate (generated caught)",
               xlim=(0, 1), ylim=(0, 1.01))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("ROC curves (seed 0); legend: seed-mean AUC [95% image-bootstrap CI] ±seed std", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_generator_heatmap(comparison: Mapping[str, Any], path: str | Path, *, title: str,
                           generators_as_rows: bool = False) -> Path:
    """Heat table of seed-mean ROC-AUC per detector and generator (every real of the split against that
    generator's fakes); each generator's label carries its number of fakes. ``generators_as_rows``: one
    row per generator and one column per detector (legible at page width when generators are many).
    Colour bar: AUC, 0.5 = chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrrkit.utils.atomic import atomic_path

    gens = list(comparison["generators"])
    names = list(comparison["detectors"])
    values = np.array([[comparison["generators"][g]["auc"][n] for g in gens] for n in names], dtype=np.float64)
    gen_labels = [f"{g} ({comparison['generators'][g]['n_fake']})" for g in gens]
    if generators_as_rows:
        values = values.T
        rows, cols = gen_labels, names
        fig, ax = plt.subplots(figsize=(2.6 + 0.9 * max(len(cols), 3), 1.2 + 0.28 * len(rows)))
        image = ax.imshow(values, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
    else:
        rows, cols = names, gen_labels
        fig, ax = plt.subplots(figsize=(1.0 + 0.62 * max(len(cols), 4), 1.4 + 0.45 * len(rows)))
        image = ax.imshow(values, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6)
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    bar.set_label("ROC-AUC (0.5 = chance)", fontsize=8)
    ax.set_title(f"{title}: AUC per generator vs all {comparison['n_real']} reals "
                 "(seed mean; (n) = generated images)", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
