"""Bootstrap intervals: point estimates equal scikit-learn's, replicates are exact metrics of resamples,
intervals cover the truth at about their level, and the paired difference detects a real gap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from hrrkit.eval.bootstrap import (
    Interval,
    _bootstrap_auc,
    bootstrap_indices,
    bootstrap_metrics,
    paired_bootstrap_difference,
    seed_summary,
)
from hrrkit.eval.metrics import roc_auc


def _binormal(n_real: int, n_fake: int, shift: float, rng: np.random.Generator, ties: bool = False):
    scores = np.r_[rng.normal(0, 1, n_real), rng.normal(shift, 1, n_fake)]
    if ties:
        scores = np.round(scores, 1)
    labels = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
    return labels, scores


def test_point_estimates_match_sklearn():
    labels, scores = _binormal(70, 45, 1.0, np.random.default_rng(1), ties=True)
    out = bootstrap_metrics(labels, scores, n_boot=200, threshold=0.5)
    assert out["roc_auc"].value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert out["ap"].value == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert out["acc"].value == pytest.approx(np.mean((scores >= 0.5) == labels), abs=1e-12)
    for name, iv in out.items():
        assert iv.low <= iv.value <= iv.high, name


def test_vectorised_auc_equals_the_metric_on_each_resample():
    labels, scores = _binormal(23, 17, 0.7, np.random.default_rng(2), ties=True)
    idx = bootstrap_indices(labels, n_boot=50, seed=3)
    fast = _bootstrap_auc(labels, scores, idx)
    slow = np.array([roc_auc(labels[row], scores[row]) for row in idx])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_resamples_are_stratified_and_seeded():
    labels = np.r_[np.zeros(5, int), np.ones(3, int)]
    idx = bootstrap_indices(labels, n_boot=100, seed=0)
    assert (labels[idx].sum(axis=1) == 3).all()
    np.testing.assert_array_equal(idx, bootstrap_indices(labels, n_boot=100, seed=0))
    assert not np.array_equal(idx, bootstrap_indices(labels, n_boot=100, seed=1))


def test_interval_covers_the_true_auc_at_about_its_level():
    # binormal with unit variances: true AUC = Phi(shift / sqrt(2))
    shift = 1.0
    true_auc = 0.5 * (1 + math.erf(shift / 2))
    rng = np.random.default_rng(0)
    hits = 0
    trials = 60
    for t in range(trials):
        labels, scores = _binormal(60, 60, shift, rng)
        iv = bootstrap_metrics(labels, scores, metrics=("roc_auc",), n_boot=400, seed=t)["roc_auc"]
        hits += iv.low <= true_auc <= iv.high
    assert 0.82 <= hits / trials <= 1.0  # nominal 95 %; percentile intervals undercover a little


def test_paired_difference_separates_a_real_gap_and_not_a_null_one():
    rng = np.random.default_rng(5)
    labels, good = _binormal(150, 150, 2.0, rng)
    _, bad = _binormal(150, 150, 0.3, rng)
    gap = paired_bootstrap_difference(labels, good, bad, n_boot=500)
    assert gap.excludes(0.0) and gap.value > 0
    same = paired_bootstrap_difference(labels, good, good + 1e-9 * rng.normal(size=good.size), n_boot=500)
    assert not same.excludes(0.0)


def test_one_class_gives_undefined_ranking_metrics_not_zero():
    out = bootstrap_metrics(np.zeros(10, int), np.linspace(0, 1, 10), n_boot=50)
    assert math.isnan(out["roc_auc"].value) and math.isnan(out["roc_auc"].low)
    assert out["acc"].value == pytest.approx(0.5)
    assert Interval(math.nan, math.nan, math.nan).format() == "n/a"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown bootstrap metric"):
        bootstrap_metrics([0, 1], [0.1, 0.9], metrics=("f1",))
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_metrics([0, 1], [0.1, 0.9], alpha=1.5)


def test_seed_summary():
    summary = seed_summary({0: 0.8, 1: 0.9, 2: 0.85})
    assert summary["mean"] == pytest.approx(0.85) and summary["n"] == 3
    assert summary["std"] == pytest.approx(np.std([0.8, 0.9, 0.85], ddof=1))
    assert seed_summary([0.7])["std"] == 0.0
