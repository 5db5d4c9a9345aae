"""Evaluation reports: metrics per generator as Markdown + JSON, and ROC / PR / score-histogram plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrrkit.eval.metrics import (
    MetricSet,
    compute_metrics,
    format_table,
    per_generator_metrics,
    precision_recall_curve,
    roc_curve,
)
from hrrkit.utils.atomic import atomic_path, atomic_write_json, atomic_write_text


def evaluate_predictions(pred: dict[str, Any], *, threshold: float = 0.5, oracle: bool = False) -> dict[str, Any]:
    """Metrics of scored images: ``overall`` (all images) and ``per_generator`` (each generator's fakes
    with their paired reals, plus ``mean``). ``pred`` is the output of
    :func:`hrrkit.train.trainer.predict_dataset` (``scores``, ``labels``, ``generators``, ``sources``).
    """
    labels, scores = np.asarray(pred["labels"]), np.asarray(pred["scores"])
    overall = compute_metrics(labels, scores, threshold=threshold, oracle=oracle) if labels.size else None
    table = (
        per_generator_metrics(
            labels, scores, pred["generators"], sources=pred.get("sources"), threshold=threshold, oracle=oracle
        )
        if labels.size
        else {}
    )
    return {"threshold": threshold, "overall": overall, "per_generator": table}


def _plot_curves(pred: dict[str, Any], table: dict[str, MetricSet], out_dir: Path, title: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrrkit.eval.metrics import pair_reals_with_generator

    labels, scores = np.asarray(pred["labels"]), np.asarray(pred["scores"])
    gens = [g if (g is not None or labels[i] == 0) else "unknown" for i, g in enumerate(pred["generators"])]
    names = [n for n in table if n != "mean"] or ["all"]
    fig_roc, ax_roc = plt.subplots(figsize=(5, 5))
    fig_pr, ax_pr = plt.subplots(figsize=(5, 5))
    fig_h, axes_h = plt.subplots(len(names), 1, figsize=(6, 2.2 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        mask = (
            np.ones_like(labels, dtype=bool)
            if name == "all"
            else pair_reals_with_generator(labels, gens, name, pred.get("sources"))
        )
        y, s = labels[mask], scores[mask]
        ax_h = axes_h[i][0]
        ax_h.hist(s[y == 0], bins=30, range=(0, 1), alpha=0.6, label="real", color="tab:blue")
        ax_h.hist(s[y == 1], bins=30, range=(0, 1), alpha=0.6, label="generated", color="tab:red")
        ax_h.set_title(f"{name}: score histogram", fontsize=9)
        ax_h.legend(fontsize=8)
        if (y == 0).any() and (y == 1).any():
            fpr, tpr, _ = roc_curve(y, s)
            auc = table[name].roc_auc if name in table else float("nan")
            ax_roc.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
            precision, recall, _ = precision_recall_curve(y, s)
            ap = table[name].ap if name in table else float("nan")
            ax_pr.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    ax_roc.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax_roc.set(
        xlabel="false positive rate (reals flagged)", ylabel="true positive rate (fakes caught)", title=f"ROC — {title}"
    )
    ax_pr.set(xlabel="recall", ylabel="precision", title=f"Precision–recall — {title}")
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "lower left")
        ax.grid(alpha=0.3)
    written = []
    for fig, name in ((fig_roc, "roc.png"), (fig_pr, "pr.png"), (fig_h, "scores.png")):
        fig.tight_layout()
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(name)
    return written


def write_scores_csv(pred: dict[str, Any], path: str | Path, *, threshold: float = 0.5) -> Path:
    """One row per scored image: ``path,label,generator,source,score,predicted`` (label and predicted:
    0 real, 1 generated; predicted at ``threshold``), so every number of a report can be re-derived."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "generator", "source", "score", "predicted"])
    sources = pred.get("sources") or [None] * len(pred["labels"])
    for file, label, gen, src, score in zip(pred["paths"], pred["labels"], pred["generators"], sources, pred["scores"]):
        writer.writerow([file, int(label), gen or "", src or "", repr(float(score)), int(score >= threshold)])
    return atomic_write_text(Path(path), buffer.getvalue())


def write_report(
    pred: dict[str, Any],
    out_dir: str | Path,
    *,
    threshold: float = 0.5,
    oracle: bool = False,
    title: str = "evaluation",
    context: dict[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Write ``report.md``, ``report.json``, ``scores.csv`` (per image) and plots (``roc.png``,
    ``pr.png``, ``scores.png``) into ``out_dir``; return the JSON payload."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = evaluate_predictions(pred, threshold=threshold, oracle=oracle)
    table: dict[str, MetricSet] = result["per_generator"]
    overall: MetricSet | None = result["overall"]
    figures = _plot_curves(pred, table, out_dir, title) if plots and len(pred["labels"]) else []
    payload = {
        "title": title,
        "threshold": threshold,
        "oracle_included": oracle,
        "overall": overall.to_dict() if overall else None,
        "per_generator": {k: v.to_dict() for k, v in table.items()},
        "n_images": int(len(pred["labels"])),
        "skipped": pred.get("skipped", []),
        "figures": figures,
        "context": context or {},
    }
    payload["scores_file"] = write_scores_csv(pred, out_dir / "scores.csv", threshold=threshold).name
    atomic_write_json(out_dir / "report.json", payload)
    lines = [f"# {title}", ""]
    lines += [
        f"{len(pred['labels'])} images scored; decision threshold {threshold:g} "
        "(an image is called generated when its score ≥ threshold)."
    ]
    if (context or {}).get("retrospector"):  # every report names the retrospector its detector used
        lines += ["", f"Detector `{context.get('detector', '?')}`, retrospector: {context['retrospector']}."]
    if oracle:
        lines += [
            "",
            "*oracle acc* picks the best threshold on these very labels: it is **optimistic** and "
            "not an achievable accuracy.",
        ]
    if overall is not None:
        lines += ["", "## All images", "", format_table({"all": overall})]
    if table:
        lines += ["", "## Per generator (each generator's fakes with their paired reals)", "", format_table(table)]
    if pred.get("skipped"):
        lines += ["", f"## Skipped files ({len(pred['skipped'])})", ""]
        lines += [f"- `{s['path']}`: {s.get('reason', s.get('error', ''))}" for s in pred["skipped"][:50]]
    for fig in figures:
        lines += ["", f"![{fig}]({fig})"]
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    return payload


def summarise(payload: dict[str, Any], keys: Sequence[str] = ("ap", "roc_auc", "acc", "balanced_acc")) -> str:
    """One line per generator for a terminal."""
    rows = payload["per_generator"] or ({"all": payload["overall"]} if payload["overall"] else {})
    out = []
    for name, row in rows.items():
        vals = ", ".join(
            f"{k}={'n/a' if row.get(k) is None or (isinstance(row.get(k), float) and math.isnan(row[k])) else format(row[k], '.4f')}"
            for k in keys
        )
        out.append(f"{name:>16}: {vals}")
    return "\n".join(out)
