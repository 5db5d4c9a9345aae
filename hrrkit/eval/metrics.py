"""Detection metrics for real (label 0) vs generated (label 1) images; pure numpy, no scikit-learn.

Conventions (see ``docs/metrics.md``):

* ``scores`` are "fake-ness" scores: higher means more likely generated. The ranking metrics (AP,
  ROC-AUC, EER, TPR at FPR) accept any real-valued score; the thresholded ones compare with a
  threshold, so ``threshold=0.5`` assumes probabilities.
* An image is **predicted fake when ``score >= threshold``** (scikit-learn's ROC convention).
* The positive class for AP / TPR / FPR is *fake*: TPR = fakes caught, FPR = reals flagged.
* Undefined values (AP or AUC without both classes, real accuracy without reals, ...) are ``nan``
  and print as ``n/a``; they are never silently 0.
* Per-generator tables evaluate each generator's fakes **together with the reals paired with it**
  (reals carrying that generator's name, plus reals with no generator, restricted to the fakes'
  sources when sources are given); the ``mean`` row is the unweighted mean over generators.
* The best-threshold ("oracle") accuracy chooses the threshold on the test labels themselves, so it
  is optimistic; it is computed only when asked and always labelled ``oracle``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "MetricSet",
    "ThresholdCalibration",
    "roc_curve",
    "precision_recall_curve",
    "roc_auc",
    "average_precision",
    "equal_error_rate",
    "tpr_at_fpr",
    "accuracy_at",
    "oracle_accuracy",
    "compute_metrics",
    "per_generator_metrics",
    "pair_reals_with_generator",
    "calibrate_threshold",
    "format_table",
]


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(labels int8, scores float64)`` 1-D arrays of the same length."""
    labels = _to_numpy(labels)
    scores = _to_numpy(scores)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {labels.shape} and {scores.shape}")
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(f"labels ({labels.shape[0]}) and scores ({scores.shape[0]}) differ in length")
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = np.unique(labels[~np.isin(labels, (0, 1))])[:5]
        raise ValueError(f"labels must be 0 (real) or 1 (fake); found {bad.tolist()}")
    scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"scores contain {int((~np.isfinite(scores)).sum())} NaN or infinite value(s)")
    return labels.astype(np.int8), scores


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _counts_at_thresholds(labels: np.ndarray, scores: np.ndarray):
    """Cumulative (fps, tps, thresholds) at each distinct score, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order].astype(np.int64)
    # last index of each run of equal scores: all tied samples switch together
    distinct = np.flatnonzero(np.diff(sorted_scores)) if sorted_scores.size else np.array([], dtype=np.int64)
    ends = np.r_[distinct, sorted_scores.size - 1] if sorted_scores.size else distinct
    tps = np.cumsum(sorted_labels)[ends]
    fps = (ends + 1) - tps
    return fps, tps, sorted_scores[ends]


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct threshold, starting at ``(0, 0, +inf)``.

    Point ``i`` is the rate of reals/fakes with ``score >= thresholds[i]``. Rates are ``nan`` when
    the class is absent.
    """
    y, s = _as_arrays(labels, scores)
    fps, tps, thr = _counts_at_thresholds(y, s)
    n_fake, n_real = int(y.sum()), int(y.size - y.sum())
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    fpr = fps / n_real if n_real else np.full(fps.shape, np.nan)
    tpr = tps / n_fake if n_fake else np.full(tps.shape, np.nan)
    return fpr.astype(np.float64), tpr.astype(np.float64), np.r_[np.inf, thr]


def precision_recall_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` at every distinct threshold, highest threshold first."""
    y, s = _as_arrays(labels, scores)
    fps, tps, thr = _counts_at_thresholds(y, s)
    n_fake = int(y.sum())
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / n_fake if n_fake else np.full(tps.shape, np.nan)
    return precision.astype(np.float64), recall.astype(np.float64), thr


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (trapezoidal; ties count one half). ``nan`` without both classes."""
    fpr, tpr, _ = roc_curve(labels, scores)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return math.nan
    return float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))


def average_precision(labels, scores) -> float:
    """AP = Σ_n (R_n − R_{n−1}) P_n over distinct thresholds (no interpolation), as scikit-learn.

    ``nan`` when there is no fake.
    """
    precision, recall, _ = precision_recall_curve(labels, scores)
    if recall.size == 0 or np.isnan(recall).any():
        return math.nan
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error_rate(labels, scores) -> float:
    """The error rate where FPR = FNR (= 1 − TPR), linearly interpolated along the ROC curve."""
    fpr, tpr, _ = roc_curve(labels, scores)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return math.nan
    fnr = 1.0 - tpr
    gap = fnr - fpr  # starts at 1 (nothing flagged), decreases to -1 (everything flagged)
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    # crossing between points i-1 (gap > 0) and i (gap < 0): both rates are linear in t on the segment
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(labels, scores, max_fpr: float) -> float:
    """The highest TPR reachable by a threshold whose FPR is at most ``max_fpr`` (no interpolation).

    This is the operating point a deployed detector can actually reach; linearly interpolated
    ROC values would be slightly higher on small test sets.
    """
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    fpr, tpr, _ = roc_curve(labels, scores)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return math.nan
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def accuracy_at(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, real accuracy (TNR), fake accuracy (TPR) and their mean at ``score >= threshold``."""
    y, s = _as_arrays(labels, scores)
    predicted_fake = s >= threshold
    n_fake, n_real = int(y.sum()), int(y.size - y.sum())
    caught = int((predicted_fake & (y == 1)).sum())
    passed = int((~predicted_fake & (y == 0)).sum())
    real_acc = passed / n_real if n_real else math.nan
    fake_acc = caught / n_fake if n_fake else math.nan
    return {
        "acc": (caught + passed) / y.size if y.size else math.nan,
        "real_acc": real_acc,
        "fake_acc": fake_acc,
        "balanced_acc": (real_acc + fake_acc) / 2 if n_real and n_fake else math.nan,
    }


def oracle_accuracy(labels, scores) -> tuple[float, float]:
    """``(accuracy, threshold)`` at the best threshold chosen **on these labels** (optimistic).

    The threshold is the midpoint between the two scores where the decision flips (or just beyond
    the extreme score when flagging everything or nothing is best).
    """
    y, s = _as_arrays(labels, scores)
    if y.size == 0:
        return math.nan, math.nan
    fps, tps, thr = _counts_at_thresholds(y, s)
    n_real = int(y.size - y.sum())
    correct = np.r_[n_real, tps + (n_real - fps)]  # index 0: threshold above every score
    best = int(np.argmax(correct))
    if best == 0:
        threshold = float(np.nextafter(thr[0], np.inf))
    elif best < thr.size:
        threshold = float((thr[best - 1] + thr[best]) / 2)
    else:
        threshold = float(thr[-1])
    return float(correct[best] / y.size), threshold


@dataclass
class MetricSet:
    """All metrics of one evaluation (one generator, or everything). ``nan`` marks undefined values."""

    n_real: int
    n_fake: int
    threshold: float
    acc: float
    real_acc: float
    fake_acc: float
    balanced_acc: float
    acc_at_0_5: float
    ap: float
    roc_auc: float
    eer: float
    tpr_at_1pct_fpr: float
    tpr_at_5pct_fpr: float
    oracle_acc: float | None = None
    oracle_threshold: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict; ``nan`` becomes ``None``; oracle keys only when computed."""
        row = asdict(self)
        if self.oracle_acc is None:
            row.pop("oracle_acc")
            row.pop("oracle_threshold")
        if not self.extra:
            row.pop("extra")
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def compute_metrics(labels, scores, *, threshold: float = 0.5, oracle: bool = False) -> MetricSet:
    """Every metric for one set of scores. ``oracle=True`` adds the optimistic best-threshold accuracy."""
    y, s = _as_arrays(labels, scores)
    at_threshold = accuracy_at(y, s, threshold)
    oracle_acc, oracle_thr = oracle_accuracy(y, s) if oracle else (None, None)
    return MetricSet(
        n_real=int((y == 0).sum()),
        n_fake=int((y == 1).sum()),
        threshold=float(threshold),
        acc=at_threshold["acc"],
        real_acc=at_threshold["real_acc"],
        fake_acc=at_threshold["fake_acc"],
        balanced_acc=at_threshold["balanced_acc"],
        acc_at_0_5=accuracy_at(y, s, 0.5)["acc"],
        ap=average_precision(y, s),
        roc_auc=roc_auc(y, s),
        eer=equal_error_rate(y, s),
        tpr_at_1pct_fpr=tpr_at_fpr(y, s, 0.01),
        tpr_at_5pct_fpr=tpr_at_fpr(y, s, 0.05),
        oracle_acc=oracle_acc,
        oracle_threshold=oracle_thr,
    )


def pair_reals_with_generator(
    labels: np.ndarray,
    generators: Sequence[str | None],
    generator: str,
    sources: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Boolean mask of the samples evaluated for ``generator``: its fakes and the reals paired with it.

    A real is paired when its generator is ``generator`` or ``None`` (shared reals) and, when
    ``sources`` are given and the real has one, its source is among the sources of the generator's
    fakes (DiffusionForensics: LSUN-bedroom reals are not used for ImageNet fakes).
    """
    y = np.asarray(labels)
    gens = np.array([g if g is not None else "" for g in generators], dtype=object)
    is_fake_of = (y == 1) & (gens == generator)
    real = (y == 0) & ((gens == generator) | (gens == ""))
    if sources is not None:
        src = np.array([s if s is not None else "" for s in sources], dtype=object)
        fake_sources = set(src[is_fake_of].tolist()) - {""}
        if fake_sources:
            real &= (src == "") | np.isin(src, list(fake_sources))
    return is_fake_of | real


def per_generator_metrics(
    labels,
    scores,
    generators: Sequence[str | None],
    *,
    sources: Sequence[str | None] | None = None,
    threshold: float = 0.5,
    oracle: bool = False,
    unknown: str = "unknown",
) -> dict[str, MetricSet]:
    """One :class:`MetricSet` per generator (sorted by name), then ``"mean"`` over generators.

    Each generator's fakes are evaluated with the reals paired with it (see
    :func:`pair_reals_with_generator`). Fakes without a generator form the group ``unknown``. The
    mean row averages each metric over generators, ignoring ``nan`` entries; its counts are the
    distinct images behind it (a real shared by several generators counts once).
    """
    y, s = _as_arrays(labels, scores)
    gens = [g if (g is not None or y[i] == 0) else unknown for i, g in enumerate(generators)]
    if len(gens) != y.size:
        raise ValueError(f"generators ({len(gens)}) and scores ({y.size}) differ in length")
    if sources is not None and len(sources) != y.size:
        raise ValueError(f"sources ({len(sources)}) and scores ({y.size}) differ in length")
    names = sorted({g for g, label in zip(gens, y) if label == 1 and g is not None})
    table: dict[str, MetricSet] = {}
    used = np.zeros(y.size, dtype=bool)
    for name in names:
        mask = pair_reals_with_generator(y, gens, name, sources)
        used |= mask
        table[name] = compute_metrics(y[mask], s[mask], threshold=threshold, oracle=oracle)
    if table:
        table["mean"] = _mean_row(list(table.values()), threshold, n_real=int((used & (y == 0)).sum()),
                                  n_fake=int((used & (y == 1)).sum()))
    return table


def _mean_row(rows: list[MetricSet], threshold: float, *, n_real: int, n_fake: int) -> MetricSet:
    def mean(key: str) -> float | None:
        values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
        finite = [v for v in values if not math.isnan(v)]
        if not values:
            return None
        return float(np.mean(finite)) if finite else math.nan

    keys = [
        "acc", "real_acc", "fake_acc", "balanced_acc", "acc_at_0_5", "ap", "roc_auc", "eer",
        "tpr_at_1pct_fpr", "tpr_at_5pct_fpr",
    ]  # fmt: skip
    values = {k: mean(k) for k in keys}
    return MetricSet(
        n_real=n_real,
        n_fake=n_fake,
        threshold=float(threshold),
        oracle_acc=mean("oracle_acc"),
        oracle_threshold=None if rows[0].oracle_acc is None else math.nan,  # no single threshold
        **values,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class ThresholdCalibration:
    """A decision threshold chosen on held-out **real** scores for a target false-positive rate."""

    threshold: float
    target_fpr: float
    achieved_fpr: float
    n_real: int


def calibrate_threshold(real_scores, target_fpr: float) -> ThresholdCalibration:
    """A threshold that flags at most ``target_fpr`` of ``real_scores`` as fake, as low as that allows.

    With ``n`` reals, at most ``floor(target_fpr * n)`` of them score at or above the returned
    threshold (predicted fake when ``score >= threshold``). The threshold sits halfway between the
    last real allowed above it and the first real kept below it, so it survives a float32 round
    trip. Use scores of real images *not* used for testing; with ``n < 1 / target_fpr`` the
    threshold lands above every real.
    """
    scores = _to_numpy(real_scores).astype(np.float64).ravel()
    if scores.size == 0:
        raise ValueError("calibrate_threshold needs at least one real score")
    if not np.isfinite(scores).all():
        raise ValueError("real scores contain NaN or infinite values")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    desc = np.sort(scores)[::-1]
    allowed = int(math.floor(target_fpr * desc.size + 1e-9))
    boundary = float(desc[allowed])  # this real (and all below it) must stay below the threshold
    above = desc[desc > boundary]
    just_above = float(np.nextafter(np.float32(boundary), np.float32(np.inf)))
    just_above = max(just_above, float(np.nextafter(boundary, np.inf)))
    if above.size:
        midpoint = (boundary + float(above.min())) / 2
        threshold = midpoint if np.float32(midpoint) > np.float32(boundary) else just_above
        threshold = min(threshold, float(above.min()))
    else:
        threshold = just_above
    achieved = float((scores >= threshold).mean())
    return ThresholdCalibration(threshold, float(target_fpr), achieved, int(scores.size))


@dataclass
class UnsureBand:
    """An abstain band ``[low, high)`` chosen on held-out data: ``real`` below ``low``, ``generated`` at
    or above ``high``, ``unsure`` between. ``high`` keeps the reals' false-positive rate at most
    ``target_fpr``, ``low`` the fakes' false-negative rate at most ``target_fnr``; when the two do not
    overlap (well separated scores) the band is empty (``low == high``)."""

    low: float
    high: float
    target_fpr: float
    target_fnr: float
    achieved_fpr: float
    achieved_fnr: float
    unsure_real: float
    unsure_fake: float
    n_real: int
    n_fake: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def calibrate_unsure_band(real_scores, fake_scores, target_fpr: float, target_fnr: float) -> UnsureBand:
    """The :class:`UnsureBand` for held-out ``real_scores`` and ``fake_scores`` (probabilities of
    generated): ``high`` = :func:`calibrate_threshold` on the reals for ``target_fpr``; ``low`` the
    mirror rule on the fakes (at most ``floor(target_fnr · m)`` of ``m`` fakes score below it, as high
    as that allows). The achieved rates and the unsure fractions are measured on the same scores."""
    reals = _to_numpy(real_scores).astype(np.float64).ravel()
    fakes = _to_numpy(fake_scores).astype(np.float64).ravel()
    if fakes.size == 0:
        raise ValueError("calibrate_unsure_band needs at least one generated (fake) score")
    if not 0.0 <= target_fnr < 1.0:
        raise ValueError(f"target_fnr must be in [0, 1), got {target_fnr}")
    high = calibrate_threshold(reals, target_fpr).threshold
    low = -calibrate_threshold(-fakes, target_fnr).threshold
    low = min(low, high)  # separated classes: no band
    return UnsureBand(
        low=float(low), high=float(high), target_fpr=float(target_fpr), target_fnr=float(target_fnr),
        achieved_fpr=float((reals >= high).mean()), achieved_fnr=float((fakes < low).mean()),
        unsure_real=float(((reals >= low) & (reals < high)).mean()),
        unsure_fake=float(((fakes >= low) & (fakes < high)).mean()), n_real=int(reals.size), n_fake=int(fakes.size),
    )


def unsure_summary(labels, scores, band: Sequence[float]) -> dict[str, float]:
    """How an abstain band ``(low, high)`` splits labelled scores: the unsure fraction (overall, of reals,
    of fakes), accuracy on the decided images, and FPR/FNR counted over all reals/fakes (an unsure
    image is neither a false positive nor a false negative)."""
    y = _to_numpy(labels).astype(np.int64).ravel()
    s = _to_numpy(scores).astype(np.float64).ravel()
    low, high = float(band[0]), float(band[1])
    unsure = (s >= low) & (s < high)
    fake_pred = s >= high
    decided = ~unsure
    real, fake = y == 0, y == 1
    mean = lambda mask: float(mask.mean()) if mask.size else float("nan")  # noqa: E731
    return {
        "low": low, "high": high, "unsure_fraction": mean(unsure),
        "unsure_real": mean(unsure[real]), "unsure_fake": mean(unsure[fake]),
        "decided_accuracy": mean((fake_pred == (y == 1))[decided]),
        "fpr": mean(fake_pred[real]), "fnr": mean((s < low)[fake]), "n": int(y.size),
    }


def format_table(table: dict[str, MetricSet], *, digits: int = 4) -> str:
    """A Markdown table of a per-generator result (or any name → MetricSet mapping)."""
    if not table:
        return "(no generators)"
    has_oracle = any(r.oracle_acc is not None for r in table.values())
    columns = [
        ("n_real", "reals"), ("n_fake", "fakes"), ("acc", "acc"), ("real_acc", "real acc"),
        ("fake_acc", "fake acc"), ("balanced_acc", "bal. acc"), ("acc_at_0_5", "acc@0.5"), ("ap", "AP"),
        ("roc_auc", "ROC-AUC"), ("eer", "EER"), ("tpr_at_1pct_fpr", "TPR@1%FPR"),
        ("tpr_at_5pct_fpr", "TPR@5%FPR"),
    ]  # fmt: skip
    if has_oracle:
        columns.append(("oracle_acc", "oracle acc (optimistic)"))

    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return str(value) if isinstance(value, int) else f"{value:.{digits}f}"

    lines = [
        "| generator | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, row in table.items():
        label = f"**{name}**" if name == "mean" else name
        lines.append(f"| {label} | " + " | ".join(cell(getattr(row, key)) for key, _ in columns) + " |")
    return "\n".join(lines)
