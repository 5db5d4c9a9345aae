"""Tables and the sample figure of docs/wild_benchmark.md, from one wild v2 build.

    python scripts/wild_v2_report.py [--quick] [--seed 0] [--folds 5] [--figure docs/img/wild_v2_samples.jpg]

Builds (or reuses from the cache) the benchmark exactly as ``hrrkit data wild-v2`` does, then prints
Markdown: counts per split and group, the source/licence table, the bias AUCs before and after the
matching step, what was dropped and why, and the build's timings; and draws one row of sample images
per (split, group).
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from hrrkit.datasets.bias import FEATURES
from hrrkit.datasets.pool_record import GROUPS
from hrrkit.datasets.wild_v2 import SPLITS, WildV2, WildV2Config, build_wild_v2

ROWS = ("real", *GROUPS)


def counts_table(bench: WildV2) -> str:
    counts = bench.counts()
    lines = ["| split | " + " | ".join(ROWS) + " | generated | families / packages |", "|---" * (len(ROWS) + 3) + "|"]
    for split in SPLITS:
        rows = bench.records(split)
        families = {r["family"] for r in rows if r["label"] == "1"}
        packages = {r["source_key"] for r in rows if r["label"] == "0"}
        generated = sum(counts[split][g] for g in GROUPS)
        lines.append(f"| {split} | " + " | ".join(str(counts[split][g]) for g in ROWS)
                     + f" | {generated} | {len(families)} / {len(packages)} |")
    return "\n".join(lines)


def sources_table(bench: WildV2) -> str:
    per: dict[tuple[str, str, str, str], Counter[str]] = defaultdict(Counter)
    for row in bench.records():
        name = row["source_key"] if row["label"] == "0" else row["source"].split("==")[0]
        kind = "photos" if row["label"] == "0" else "generated"
        per[(kind, name, row["registry"], row["license"])][row["split"]] += 1
    lines = ["| class | package | registry | licence | train | val | test |", "|---|---|---|---|---|---|---|"]
    for (kind, name, registry, license), counts in sorted(per.items()):
        lines.append(f"| {kind} | {name} | {registry} | {license} | "
                     + " | ".join(str(counts.get(s, 0)) for s in SPLITS) + " |")
    return "\n".join(lines)


def bias_table(report: dict) -> str:
    lines = ["| split | n real / generated | " + " | ".join(FEATURES) + " | logistic (CV) |",
             "|---" * (len(FEATURES) + 3) + "|"]
    for scope, entry in report.items():
        lines.append(f"| {scope} | {entry['n_real']} / {entry['n_fake']} | "
                     + " | ".join(f"{entry[f]:.3f}" for f in (*FEATURES, "logistic")) + " |")
    return "\n".join(lines)


def sample_figure(bench: WildV2, path: Path, per_row: int = 8, seed: int = 0) -> Path:
    """One row per (split, group) with up to ``per_row`` images, one per family/package first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rng = np.random.default_rng(seed)
    grid = []
    for split in SPLITS:
        rows = bench.records(split)
        for group in ROWS:
            mine = [r for r in rows if r["group"] == group]
            if not mine:
                continue
            mine = [mine[i] for i in rng.permutation(len(mine))]
            firsts = list({(r["family"] or r["source_key"]): r for r in reversed(mine)}.values())
            chosen = list({r["path"]: r for r in firsts + mine}.values())[:per_row]
            grid.append((f"{split}\n{group}", chosen))
    figure, axes = plt.subplots(len(grid), per_row, figsize=(1.5 * per_row, 1.7 * len(grid)), squeeze=False)
    for (title, chosen), row_axes in zip(grid, axes):
        for column, axis in enumerate(row_axes):
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if column == 0:
                axis.set_ylabel(title, fontsize=8)
            if column < len(chosen):
                record = chosen[column]
                with Image.open(bench.root / record["path"]) as image:
                    axis.imshow(np.asarray(image.convert("RGB")))
                axis.set_title((record["family"] or record["source_key"])[:22], fontsize=6)
    figure.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    # JPEG for the docs: 15 rows of thumbnails are ~3 MB as PNG
    figure.savefig(path, dpi=80, **({"pil_kwargs": {"quality": 85}} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--figure", type=Path, default=None, help="where to save the sample figure (.jpg or .png)")
    args = parser.parse_args()
    bench = build_wild_v2(seed=args.seed, quick=args.quick, config=WildV2Config(folds=args.folds))
    info = bench.info
    print(f"build: {bench.root} ({'reused' if bench.reused else 'built'})\n")
    print("## counts\n\n" + counts_table(bench) + "\n")
    print("## sources\n\n" + sources_table(bench) + "\n")
    print("## bias before matching\n\n" + bias_table(info["bias_before_matching"]) + "\n")
    print("## bias after matching\n\n" + bias_table(info["bias"]) + "\n")
    print("## dropped\n\n" + "\n".join(f"- {reason}: {n}" for reason, n in info["dropped"].items()) + "\n")
    print("## timings\n\n" + "\n".join(f"- {name}: {value}" for name, value in info["timings"].items()))
    if args.figure:
        print(f"\nfigure: {sample_figure(bench, args.figure, seed=args.seed)}")


if __name__ == "__main__":
    main()
