"""Detector comparison across seeds: alignment by path, seed means equal scikit-learn's per-seed AUCs,
paired verdicts, per-generator AUC, the table and the figures."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hrrkit.eval.comparison import compare_detectors, format_comparison_table, plot_generator_heatmap, plot_roc_curves


def _pred(rng, labels, generators, shift, order=None):
    n = labels.size
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + shift * labels)))
    paths = np.array([f"img{i:03d}.png" for i in range(n)])
    order = np.arange(n) if order is None else order
    return {"paths": list(paths[order]), "labels": labels[order], "scores": scores[order],
            "generators": [generators[i] for i in order], "threshold": 0.5}


@pytest.fixture
def split():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(80, int), np.ones(60, int)]
    generators = [None] * 80 + ["flux"] * 30 + ["sdxl"] * 30
    preds = {
        "good": [_pred(rng, labels, generators, 3.0, rng.permutation(140)) for _ in range(3)],
        "chance": [_pred(rng, labels, generators, 0.0) for _ in range(3)],
    }
    preds["twin"] = [dict(p, scores=p["scores"] + 1e-7) for p in preds["good"]]
    return preds


def test_seed_means_and_verdicts(split):
    comp = compare_detectors(split, reference="good", n_boot=300)
    assert comp["n_real"] == 80 and comp["n_fake"] == 60 and comp["dropped"] == 0
    per_seed = [roc_auc_score(p["labels"], p["scores"]) for p in split["good"]]
    auc = comp["detectors"]["good"]["roc_auc"]
    assert auc["mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert auc["per_seed"] == pytest.approx(per_seed, abs=1e-12)
    assert auc["low"] <= auc["mean"] <= auc["high"]
    assert comp["versus_reference"]["chance"]["verdict"] == "good higher"
    assert comp["versus_reference"]["twin"]["verdict"] == "no significant difference"
    flux = comp["generators"]["flux"]
    assert flux["n_fake"] == 30
    mask = np.array([g in (None, "flux") for g in split["chance"][0]["generators"]])
    expected = np.mean([roc_auc_score(p["labels"][mask], p["scores"][mask]) for p in split["chance"]])
    assert flux["auc"]["chance"] == pytest.approx(expected, abs=1e-12)


def test_missing_images_are_dropped_for_everyone(split):
    split["chance"][1] = {k: (v[:-5] if isinstance(v, (list, np.ndarray)) else v) for k, v in split["chance"][1].items()}
    comp = compare_detectors(split, n_boot=50)
    assert comp["n_real"] + comp["n_fake"] == 135 and comp["dropped"] == 5


def test_table_and_figures(split, tmp_path):
    comp = compare_detectors(split, reference="good", n_boot=100)
    table = format_comparison_table(comp)
    assert table.count("\n") == 4 and "no significant difference" in table and "reference" in table
    roc = plot_roc_curves({"test": split}, {"test": comp}, tmp_path / "roc.png")
    heat = plot_generator_heatmap(comp, tmp_path / "heat.png", title="test")
    assert roc.stat().st_size > 10_000 and heat.stat().st_size > 5_000


def test_unknown_reference_is_named(split):
    with pytest.raises(ValueError, match="reference detector 'nope'"):
        compare_detectors(split, reference="nope")
