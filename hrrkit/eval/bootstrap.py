"""Bootstrap confidence intervals over images, and paired comparisons of two detectors.

Benchmarks with a few hundred test images (and a handful per generator) give metrics whose sampling
error is as large as the differences between detectors. Every headline number hrrkit reports comes
with a percentile bootstrap interval:

* **Stratified resampling.** Reals and fakes are resampled separately with replacement, each class
  keeping its size, so every replicate has both classes and AUC/AP are always defined.
* **Percentile interval** at level ``1 − alpha`` (default 95 %), from ``n_boot`` replicates
  (default 2000) drawn from a seeded generator: the same inputs and seed give the same interval.
* **Paired comparison.** Two detectors scored on the *same* images are resampled with the *same*
  indices; the interval of the difference decides "significantly different" (it excludes 0), which is
  stricter and more correct than checking whether two marginal intervals overlap.

Everything is vectorised over replicates (no Python loop over images or replicates for AUC; AP and
TPR loop over replicates only, each replicate vectorised).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hrrkit.eval.metrics import _as_arrays, accuracy_at, average_precision, roc_auc, tpr_at_fpr

__all__ = [
    "Interval",
    "BOOTSTRAP_METRICS",
    "bootstrap_indices",
    "bootstrap_metrics",
    "paired_bootstrap_difference",
    "seed_summary",
]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap percentile interval ``[low, high]`` (``nan`` if undefined)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def format(self, digits: int = 3) -> str:
        """``0.912 [0.871, 0.944]``; ``n/a`` when undefined."""
        if math.isnan(self.value):
            return "n/a"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def excludes(self, x: float) -> bool:
        """Whether ``x`` lies outside the interval (a difference interval excluding 0 is significant)."""
        return not math.isnan(self.low) and (x < self.low or x > self.high)


def _bootstrap_auc(y: np.ndarray, s: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC-AUC of every replicate (ties count one half); ``idx`` is ``(R, N)`` into ``y``/``s``.

    A replicate is a weighting of the original images (how often each was drawn). With the distinct
    score levels sorted ascending, AUC = Σ_levels w_fake(level) · (w_real(below) + ½ w_real(level)) / (n₀ n₁),
    which is a pair of cumulative sums over a ``(R, levels)`` matrix: no loop over replicates.
    """
    order = np.argsort(s, kind="mergesort")
    starts = np.flatnonzero(np.r_[True, np.diff(s[order]) != 0])  # first sorted position of each level
    n_rep = idx.shape[0]
    counts = np.zeros((n_rep, s.size), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n_rep), idx.shape[1]), idx.ravel()), 1.0)
    counts = counts[:, order]
    is_fake = (y[order] == 1)
    real_w = np.add.reduceat(counts * ~is_fake, starts, axis=1)  # (R, levels)
    fake_w = np.add.reduceat(counts * is_fake, starts, axis=1)
    below = np.cumsum(real_w, axis=1) - real_w
    n0, n1 = real_w.sum(axis=1), fake_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (fake_w * (below + 0.5 * real_w)).sum(axis=1) / (n0 * n1)


#: The metrics :func:`bootstrap_metrics` reports: name → f(labels, scores, threshold) for one replicate.
BOOTSTRAP_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, float], float]] = {
    "roc_auc": lambda y, s, t: roc_auc(y, s),
    "ap": lambda y, s, t: average_precision(y, s),
    "acc": lambda y, s, t: accuracy_at(y, s, t)["acc"],
    "tpr_at_5pct_fpr": lambda y, s, t: tpr_at_fpr(y, s, 0.05),
    "tpr_at_1pct_fpr": lambda y, s, t: tpr_at_fpr(y, s, 0.01),
}


def bootstrap_indices(labels, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``(n_boot, N)`` int64 indices of stratified resamples: reals from reals, fakes from fakes.

    The same ``(labels, n_boot, seed)`` give the same indices, so two detectors scored on the same
    images can be resampled identically (:func:`paired_bootstrap_difference`).
    """
    y = np.asarray(labels).astype(np.int64)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, y.size), dtype=np.int64)
    column = 0
    for cls in (0, 1):
        members = np.flatnonzero(y == cls)
        if members.size:
            out[:, column:column + members.size] = members[rng.integers(0, members.size, (n_boot, members.size))]
            column += members.size
    return out


def _percentile_interval(value: float, replicates: np.ndarray, alpha: float) -> Interval:
    finite = replicates[np.isfinite(replicates)]
    if math.isnan(value) or finite.size == 0:
        return Interval(value, math.nan, math.nan)
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return Interval(float(value), float(low), float(high))


def _replicate_values(name: str, y: np.ndarray, s: np.ndarray, idx: np.ndarray, threshold: float) -> np.ndarray:
    if name == "roc_auc":
        return _bootstrap_auc(y, s, idx)
    if name == "acc":  # vectorised: the mean of correct decisions per replicate
        correct = (s >= threshold) == (y == 1)
        return correct[idx].mean(axis=1)
    fn = BOOTSTRAP_METRICS[name]
    return np.array([fn(y[row], s[row], threshold) for row in idx], dtype=np.float64)


def bootstrap_metrics(
    labels,
    scores,
    *,
    threshold: float = 0.5,
    metrics: Sequence[str] = tuple(BOOTSTRAP_METRICS),
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Interval]:
    """Point estimate and stratified percentile bootstrap interval of each metric.

    Args:
        labels: ``(N,)`` 0 real / 1 generated.
        scores: ``(N,)`` fake-ness scores (higher = more likely generated).
        threshold: decision threshold for ``acc`` (``score >= threshold`` is "generated").
        metrics: names from :data:`BOOTSTRAP_METRICS`.
        n_boot: bootstrap replicates.
        alpha: ``1 − alpha`` is the interval's level.
        seed: seed of the resampling.

    Returns:
        ``{metric: Interval}``; undefined metrics (a class absent) are ``Interval(nan, nan, nan)``.
    """
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        raise ValueError(f"unknown bootstrap metric(s) {unknown}; choose from {sorted(BOOTSTRAP_METRICS)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y, s = _as_arrays(labels, scores)
    out: dict[str, Interval] = {}
    both_classes = 0 < int(y.sum()) < y.size
    idx = bootstrap_indices(y, n_boot, seed) if y.size else None
    for name in metrics:
        value = BOOTSTRAP_METRICS[name](y, s, threshold) if y.size else math.nan
        if idx is None or (name != "acc" and not both_classes):
            out[name] = Interval(float(value), math.nan, math.nan)
            continue
        out[name] = _percentile_interval(float(value), _replicate_values(name, y, s, idx, threshold), alpha)
    return out


def paired_bootstrap_difference(
    labels,
    scores_a,
    scores_b,
    *,
    metric: str = "roc_auc",
    threshold_a: float = 0.5,
    threshold_b: float = 0.5,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Interval of ``metric(a) − metric(b)`` over the same resampled images (paired bootstrap).

    ``excludes(0)`` on the result is the test "a and b differ at level alpha" on these images.
    """
    y, sa = _as_arrays(labels, scores_a)
    _, sb = _as_arrays(labels, scores_b)
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown bootstrap metric {metric!r}; choose from {sorted(BOOTSTRAP_METRICS)}")
    fn = BOOTSTRAP_METRICS[metric]
    value = fn(y, sa, threshold_a) - fn(y, sb, threshold_b)
    if not 0 < int(y.sum()) < y.size:
        return Interval(float(value), math.nan, math.nan)
    idx = bootstrap_indices(y, n_boot, seed)
    diff = _replicate_values(metric, y, sa, idx, threshold_a) - _replicate_values(metric, y, sb, idx, threshold_b)
    return _percentile_interval(float(value), diff, alpha)


def seed_summary(values_by_seed: Mapping[int, float] | Sequence[float]) -> dict[str, float]:
    """``{mean, std, min, max, n}`` of one metric over training seeds (std with ddof=1; 0 for one seed)."""
    values = np.asarray(list(values_by_seed.values()) if isinstance(values_by_seed, Mapping) else values_by_seed,
                        dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "n": int(values.size),
    }
