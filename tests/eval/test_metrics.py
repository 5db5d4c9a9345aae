"""Detection metrics against scikit-learn (the independent reference) on random and tied scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics as sk

from hrrkit.eval.metrics import (
    accuracy_at,
    average_precision,
    calibrate_threshold,
    compute_metrics,
    equal_error_rate,
    format_table,
    oracle_accuracy,
    pair_reals_with_generator,
    per_generator_metrics,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)


@st.composite
def labelled_scores(draw, tied: bool):
    n = draw(st.integers(2, 60))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda ys: 0 < sum(ys) < len(ys)))
    if tied:  # few distinct values: many ties, including across classes
        levels = draw(st.integers(1, 4))
        scores = draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))
        scores = [s / max(levels, 1) for s in scores]
    else:
        scores = draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n))
    return np.array(labels), np.array(scores, dtype=np.float64)


def _check_against_sklearn(labels, scores):
    assert roc_auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(sk.average_precision_score(labels, scores), abs=1e-12)
    fpr, tpr, thr = sk.roc_curve(labels, scores, drop_intermediate=False)
    ours = roc_curve(labels, scores)
    np.testing.assert_allclose(ours[0], fpr)
    np.testing.assert_allclose(ours[1], tpr)
    np.testing.assert_allclose(ours[2][1:], thr[1:])
    for target in (0.01, 0.05, 0.25):
        assert tpr_at_fpr(labels, scores, target) == pytest.approx(tpr[fpr <= target].max())
    eer = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert equal_error_rate(labels, scores) == pytest.approx(eer, abs=1e-9)
    for threshold in (0.5, float(np.median(scores))):
        predicted = (scores >= threshold).astype(int)
        acc = accuracy_at(labels, scores, threshold)
        assert acc["acc"] == pytest.approx(sk.accuracy_score(labels, predicted))
        assert acc["balanced_acc"] == pytest.approx(sk.balanced_accuracy_score(labels, predicted))
        assert acc["fake_acc"] == pytest.approx(sk.recall_score(labels, predicted))
        assert acc["real_acc"] == pytest.approx(sk.recall_score(1 - labels, 1 - predicted))
    best, threshold = oracle_accuracy(labels, scores)
    brute = max(sk.accuracy_score(labels, scores >= t) for t in np.r_[np.inf, np.unique(scores)])
    assert best == pytest.approx(brute)
    assert sk.accuracy_score(labels, scores >= threshold) == pytest.approx(best)


@settings(max_examples=60)
@given(labelled_scores(tied=False))
def test_random_scores_match_sklearn(data):
    _check_against_sklearn(*data)


@settings(max_examples=60)
@given(labelled_scores(tied=True))
def test_tied_scores_match_sklearn(data):
    _check_against_sklearn(*data)


def test_known_values():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert equal_error_rate(labels, [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert equal_error_rate(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5
    # fakes ranked last: precision 1/3 at recall 1/2, 1/2 at recall 1
    assert average_precision(labels, [0.9, 0.8, 0.2, 0.1]) == pytest.approx(0.5 / 3 + 0.5 / 2)
    result = compute_metrics(labels, [0.1, 0.6, 0.7, 0.4], threshold=0.5)
    assert (result.acc, result.real_acc, result.fake_acc) == (0.5, 0.5, 0.5)
    assert compute_metrics(labels, [0.1, 0.6, 0.7, 0.4], threshold=0.65).acc == 0.75
    assert compute_metrics(labels, [0.1, 0.6, 0.7, 0.4], threshold=0.3).real_acc == 0.5


def test_single_class_gives_nan_not_a_crash():
    result = compute_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(result.ap) is False and math.isnan(result.roc_auc) and math.isnan(result.real_acc)
    assert result.fake_acc == pytest.approx(2 / 3)
    assert result.to_dict()["roc_auc"] is None
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_inputs_are_validated_and_tensors_accepted():
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0, 1, 1], [0.1, 0.2])
    assert roc_auc(torch.tensor([0, 1]), torch.tensor([0.2, 0.9])) == 1.0


def test_oracle_only_when_asked_and_labelled():
    labels, scores = [0, 0, 1, 1], [0.1, 0.6, 0.7, 0.4]
    plain = compute_metrics(labels, scores)
    assert "oracle_acc" not in plain.to_dict()
    with_oracle = compute_metrics(labels, scores, oracle=True)
    assert with_oracle.oracle_acc == 0.75 and "oracle_acc" in with_oracle.to_dict()
    assert "oracle acc (optimistic)" in format_table({"x": with_oracle})
    assert "oracle" not in format_table({"x": plain})


def test_per_generator_pairs_each_generator_with_its_reals():
    # ForenSynths-style: reals carry their generator folder; DF-style: shared reals with sources
    labels = np.array([0, 1, 0, 1, 1, 0, 0])
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.2, 0.3, 0.4])
    generators = ["a", "a", "b", "b", None, None, None]
    table = per_generator_metrics(labels, scores, generators)
    assert list(table) == ["a", "b", "unknown", "mean"]
    # a: fake 0.9 + reals (a: 0.1, shared: 0.3, 0.4)
    assert (table["a"].n_real, table["a"].n_fake) == (3, 1)
    assert table["a"].roc_auc == 1.0
    # b: fake 0.7 + reals (b: 0.8, shared 0.3, 0.4): one real above the fake
    assert table["b"].roc_auc == pytest.approx(2 / 3)
    assert table["unknown"].n_fake == 1 and table["unknown"].roc_auc == 0.0
    # the mean row counts each image once: 4 distinct reals (2 shared by a, b and unknown), 3 fakes
    assert (table["mean"].n_real, table["mean"].n_fake) == (4, 3)
    assert table["mean"].roc_auc == pytest.approx((1 + 2 / 3 + 0) / 3)
    expected = compute_metrics([0, 1, 0, 0], [0.8, 0.7, 0.3, 0.4])
    assert table["b"].ap == pytest.approx(expected.ap)


def test_sources_restrict_shared_reals():
    labels = np.array([0, 0, 1, 1])
    generators = [None, None, "adm", "adm"]
    sources = ["bedroom", "imagenet", "imagenet", "imagenet"]
    mask = pair_reals_with_generator(labels, generators, "adm", sources)
    assert mask.tolist() == [False, True, True, True]
    table = per_generator_metrics(labels, [0.9, 0.1, 0.5, 0.6], generators, sources=sources)
    assert table["adm"].n_real == 1 and table["adm"].roc_auc == 1.0


@settings(max_examples=40)
@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=200),
    st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.5]),
)
def test_calibrated_threshold_meets_the_target_and_is_tight(real_scores, target):
    scores = np.array(real_scores)
    calibration = calibrate_threshold(scores, target)
    flagged = scores >= calibration.threshold
    assert flagged.sum() <= math.floor(target * scores.size + 1e-9)
    assert calibration.achieved_fpr == pytest.approx(flagged.mean())
    assert (scores.astype(np.float32) >= np.float32(calibration.threshold)).sum() == flagged.sum()
    below = scores[~flagged]
    if below.size:  # lowering the threshold to the highest unflagged real would break the target
        assert (scores >= below.max()).mean() > target


def test_calibration_argument_errors():
    with pytest.raises(ValueError, match="at least one"):
        calibrate_threshold([], 0.05)
    with pytest.raises(ValueError, match="target_fpr"):
        calibrate_threshold([0.1], 1.0)


def test_format_table_prints_na_for_undefined():
    table = per_generator_metrics([1, 1], [0.4, 0.9], ["g", "g"])
    text = format_table(table)
    assert "| g |" in text and "n/a" in text and "**mean**" in text
