"""The validation-only runs behind the demo's HRR settings (docs/design.md, "The demo on real generators").

Trains each variant on the wild benchmark's ``train`` split exactly as ``hrrkit demo`` does (seed 0, the
demo's epochs and optimiser, cached retrospection and frozen features) and prints its AUC/AP on ``val``.
No test split is read.

    python scripts/demo_val_selection.py CACHE_DIR '{"enet3": ["hrr", {"backbone.options": {...}}]}'
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hrrkit import demo
from hrrkit.datasets.wild import build_wild_benchmark
from hrrkit.eval.metrics import average_precision, roc_auc
from hrrkit.eval.predict import predict_dataset
from hrrkit.models.detector import HRRDetector, load_detector
from hrrkit.train.config import TrainConfig
from hrrkit.train.trainer import fit, seed_everything


def main(cache: Path, variants: dict[str, list]) -> None:
    bench = build_wild_benchmark(cache, progress=False)
    splits = {s: bench.samples(s) for s in ("train", "val")}
    settings = demo.FULL_SETTINGS
    retro = cache / "selection-retrospection"
    for name, (preset, changes) in variants.items():
        started = time.perf_counter()
        config = demo.demo_detector_config(preset, settings, cache / "selection-features").replace(**changes)
        seed_everything(0)
        model = HRRDetector(config)
        data = {s: demo._dataset(model, splits[s], train=s == "train", seed=0, retrospection_cache=retro)
                for s in splits}
        train = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=0,
                            early_stopping_patience=0, log_every=50)
        result = fit(model, data["train"], data["val"], train, cache / "selection-runs" / name, resume=False,
                     progress=False)
        best = load_detector(cache / "selection-runs" / name / "best")
        pred = predict_dataset(best, demo._dataset(best, splits["val"], train=False, seed=0, retrospection_cache=retro),
                               progress=False)
        print(json.dumps({"variant": name, "val_auc": round(roc_auc(pred["labels"], pred["scores"]), 4),
                          "val_ap": round(average_precision(pred["labels"], pred["scores"]), 4),
                          "best_epoch": result.best_epoch, "seconds": round(time.perf_counter() - started, 1)}),
              flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]))
