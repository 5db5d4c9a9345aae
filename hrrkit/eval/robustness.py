"""Robustness tables: metrics under each perturbation and a plot of AP against strength."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hrrkit.eval.perturb import Perturbation
from hrrkit.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

_KEYS = (("ap", "AP"), ("roc_auc", "ROC-AUC"), ("acc", "acc"), ("real_acc", "real acc"), ("fake_acc", "fake acc"))


def _row(payload: dict[str, Any]) -> dict[str, Any]:
    pg = payload["per_generator"]
    return pg.get("mean") or payload["overall"] or {}


def write_robustness_report(
    clean: dict[str, Any], results: dict[str, dict[str, Any]], perturbations: list[Perturbation], out_dir: Path
) -> dict[str, Any]:
    """``robustness.md`` (one table per perturbation kind), ``robustness.json`` and ``robustness.png``."""
    out_dir = Path(out_dir)
    kinds: dict[str, list[Perturbation]] = {}
    for p in perturbations:
        kinds.setdefault(p.kind, []).append(p)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines = ["# Robustness", "", "Each perturbation is applied to real and generated images alike; metrics are "
             "the mean over generators (or all images when there are none).", ""]
    data: dict[str, Any] = {"clean": _row(clean), "perturbations": {}}
    for kind, items in kinds.items():
        lines += [f"## {kind}", "", "| strength | " + " | ".join(t for _, t in _KEYS) + " |",
                  "|---|" + "---:|" * len(_KEYS)]
        lines.append("| clean | " + " | ".join(fmt(_row(clean).get(k)) for k, _ in _KEYS) + " |")
        for p in items:
            row = _row(results[p.name])
            data["perturbations"][p.name] = row
            lines.append(f"| {p.name.partition(':')[2] or 'on'} | " + " | ".join(fmt(row.get(k)) for k, _ in _KEYS) + " |")
        lines.append("")
    figure = _plot(clean, results, kinds, out_dir)
    if figure:
        lines += [f"![AP against strength]({figure})", ""]
    atomic_write_text(out_dir / "robustness.md", "\n".join(lines))
    atomic_write_json(out_dir / "robustness.json", data)
    return data


def _plot(clean, results, kinds, out_dir: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds), 3), squeeze=False)
    for ax, (kind, items) in zip(axes[0], kinds.items()):
        xs = [p.strength for p in items]
        ys = [_row(results[p.name]).get("ap") for p in items]
        ax.plot(xs, [y if y is not None else float("nan") for y in ys], "o-")
        clean_ap = _row(clean).get("ap")
        if clean_ap is not None:
            ax.axhline(clean_ap, color="k", ls="--", lw=0.8, label="clean")
        ax.set(title=kind, xlabel="strength", ylabel="AP", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_dir / "robustness.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return "robustness.png"
