"""Per-epoch training time of three retrospection paths, interleaved epoch by epoch so that machine load
hits all of them alike: the blur in forward (the old default), the shipped diffusion model in forward,
and the shipped diffusion model read from a filled cache (:mod:`hrrkit.retrospect.views`).

Mini-benchmark (quick) train split: 64 images of 28-56 px, 32-px random crops, demo-sized HRR (compact
CNN width 8, depth 2, style levels 1, 2), batch 16, one CPU thread. The loop is the trainer's step
(DataLoader + the dataset's collate, forward, loss, backward, AdamW), without checkpoint I/O.

    OMP_NUM_THREADS=1 python benchmarks/retrospect_epoch_time.py [EPOCHS] [OUT_DIR]

writes ``OUT_DIR/retrospect_epoch_time.json`` (default ``benchmarks/results/cpu-2core-reference``) and
``docs/img/retrospection_epoch_time.png``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from hrrkit.data.dataset import ImageDataset, collate_samples
from hrrkit.datasets import build_mini_benchmark
from hrrkit.models.detector import HRRDetector
from hrrkit.models.presets import preset_config
from hrrkit.retrospect.views import RetrospectedDataset, RetrospectionStage, fill_view_cache
from hrrkit.train.trainer import seed_everything

PATHS = (("blur, in forward", "blur", False), ("real-photo-unet, in forward", "unet", False),
         ("real-photo-unet, filled cache", "unet", True))


def detector_config(kind: str):
    config = preset_config("hrr").replace(**{"input.policy": "random_crop", "input.crop_size": 32,
                                             "backbone.options": {"width": 8, "depth": 2}, "style.levels": [1, 2]})
    return config.replace(**{"retrospector.kind": "blur", "retrospector.path": None}) if kind == "blur" else config


def main(epochs: int, out_dir: Path) -> list[dict]:
    torch.set_num_threads(1)
    samples = build_mini_benchmark(quick=True, progress=False).samples("train")
    runs = {}
    for name, kind, cached in PATHS:
        seed_everything(0)
        model = HRRDetector(detector_config(kind)).train()
        data = ImageDataset(samples, input_policy="random_crop", crop_size=32, seed=0)
        fill = None
        if cached:
            data = RetrospectedDataset(data, RetrospectionStage(model, dither=True), tempfile.mkdtemp())
            start = time.perf_counter()
            fill_view_cache(data)
            fill = time.perf_counter() - start
        runs[name] = {"model": model, "data": data, "opt": torch.optim.AdamW(model.parameters(), 1e-3),
                      "times": [], "fill": fill}
    for epoch in range(epochs):
        for run in runs.values():
            run["data"].set_epoch(epoch)
            loader = DataLoader(run["data"], batch_size=16, shuffle=True,
                                collate_fn=getattr(run["data"], "collate", collate_samples),
                                generator=torch.Generator().manual_seed(epoch))
            start = time.perf_counter()
            for batch in loader:
                out = run["model"](batch["images"])
                loss, _ = run["model"].compute_loss(out, batch["labels"].float())
                run["opt"].zero_grad()
                loss.backward()
                run["opt"].step()
            run["times"].append(time.perf_counter() - start)
    rows = [{"path": name, "median_epoch_s": round(statistics.median(run["times"]), 3),
             "epochs_s": [round(t, 3) for t in run["times"]], "images": len(samples), "threads": 1,
             "fill_cache_s": None if run["fill"] is None else round(run["fill"], 2)} for name, run in runs.items()]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "retrospect_epoch_time.json").write_text(json.dumps(rows, indent=1) + "\n")
    _figure(rows, epochs, Path("docs/img/retrospection_epoch_time.png"))
    return rows


def _figure(rows: list[dict], epochs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    ax.barh([r["path"] for r in rows], [r["median_epoch_s"] for r in rows], color=["#999999", "#d95f02", "#1b9e77"])
    for i, r in enumerate(rows):
        note = f" {r['median_epoch_s']:.2f} s" + (f"  (cache filled once: {r['fill_cache_s']:.0f} s)"
                                                   if r["fill_cache_s"] else "")
        ax.text(r["median_epoch_s"], i, note, va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"s per training epoch (median of {epochs}, {rows[0]['images']} images, 1 thread)")
    ax.set_xlim(0, 1.6 * max(r["median_epoch_s"] for r in rows))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    for row in main(int(sys.argv[1]) if len(sys.argv) > 1 else 8,
                    Path(sys.argv[2]) if len(sys.argv) > 2 else Path("benchmarks/results/cpu-2core-reference")):
        print(json.dumps(row))
