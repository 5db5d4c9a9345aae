"""Shortcut checks for a real-vs-generated benchmark: can a trivial classifier tell the classes apart?

A benchmark whose two classes differ in file size, container header, brightness, sharpness or colour
saturation lets a detector score well without looking for generation traces (DIRE's JPEG reals, the
WebP bias of ComfyUI thumbnails). :func:`image_features` measures those cues on the *final* files of
a benchmark, and :func:`bias_report` gives, per split, the AUC of each single feature and of a
cross-validated logistic regression on all of them. A sound split has every AUC in
:data:`AUC_BAND` (0.5 is chance; below 0.4 is as informative as above 0.6).

One implementation for the wild v2 build (``build.json``), its test and docs/wild_benchmark.md.
"""

from __future__ import annotations

import io
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "AUC_BAND",
    "FEATURES",
    "MIN_PER_CLASS",
    "auc",
    "bias_report",
    "colourfulness",
    "failures",
    "image_features",
    "image_features_from_bytes",
    "laplacian_variance",
    "logistic_cv_auc",
    "match_classes",
]

#: Every AUC of a sound split lies in this closed interval.
AUC_BAND: tuple[float, float] = (0.4, 0.6)

#: A scope (split) is held to the band only when both classes have at least this many images.
MIN_PER_CLASS = 20

#: The measured cues, in report order. ``header`` is categorical (the container bytes before the image
#: data, scored by the fake rate of each distinct header); the others are numbers.
FEATURES: tuple[str, ...] = ("file_size", "header", "brightness", "sharpness", "colourfulness")


def _png_header(data: bytes) -> bytes:
    """The bytes of a PNG before its first ``IDAT`` chunk (signature, ``IHDR``, any metadata chunks);
    for other containers the first 64 bytes."""
    index = data.find(b"IDAT")
    return data[: index - 4] if data.startswith(b"\x89PNG") and index >= 4 else data[:64]


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a ``float (H, W)`` image in 0..255 (valid region):
    the usual sharpness/noise measure."""
    g = gray.astype(np.float64)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness of a ``uint8 (H, W, 3)`` image (0 for gray; ~100+ for vivid)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def image_features(path: str | Path) -> dict[str, float | str]:
    """The cues of one image file: ``file_size`` (bytes), ``header`` (hex CRC-32 of the container bytes
    before the pixel data), ``brightness`` (mean luma, 0..255), ``sharpness`` (Laplacian variance of luma)
    and ``colourfulness``."""
    return image_features_from_bytes(Path(path).read_bytes())


def image_features_from_bytes(data: bytes) -> dict[str, float | str]:
    """:func:`image_features` of an encoded image held in memory."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB"))
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return {
        "file_size": float(len(data)),
        "header": f"{zlib.crc32(_png_header(data)):08x}",
        "brightness": float(luma.mean()),
        "sharpness": laplacian_variance(luma),
        "colourfulness": colourfulness(rgb),
    }


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # ties share the mean of their positions (1-based)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + end - 1) + 1.0
    return ranks


def auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """ROC AUC of ``scores`` for ``labels`` (1 = generated), ties counted half (Mann-Whitney U);
    NaN when a class is empty."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 50) -> np.ndarray:
    """Newton (IRLS) fit of an L2-regularised, class-balanced logistic regression (each class weighs half);
    ``x`` has a bias column last."""
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0
    n_pos = max(float(y.sum()), 1.0)
    n_neg = max(float(len(y) - y.sum()), 1.0)
    sample = np.where(y == 1, len(y) / (2 * n_pos), len(y) / (2 * n_neg))
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (sample * (p - y)) + penalty * w
        hessian = (x * (sample * p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _design(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.c_[(x - mean) / std, np.ones(len(x))]


def logistic_cv_auc(x: np.ndarray, labels: Sequence[int] | np.ndarray, *, folds: int = 5, repeats: int = 4,
                    seed: int = 0) -> float:
    """Out-of-fold AUC of a class-balanced logistic regression on the columns of ``x`` (``float (N, F)``,
    standardised on each training fold): stratified ``folds``-fold cross-validation, mean over ``repeats``
    seeded fold assignments.

    Only its upper side is a test: with no signal, out-of-fold AUCs fall *below* 0.5 at these sample
    sizes (leaving a point out moves the fit away from it), so a low value means "nothing to learn",
    not a reversed cue. In-sample AUCs would be useless the other way (0.70 median with 20 images per
    class and no signal at all).
    """
    y = np.asarray(labels, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        fold_of = np.empty(len(y), dtype=np.int64)
        for cls in (0, 1):
            members = rng.permutation(np.flatnonzero(y == cls))
            fold_of[members] = (np.arange(len(members)) + int(rng.integers(folds))) % folds
        scores = np.zeros(len(y))
        for fold in range(folds):
            test, train = fold_of == fold, fold_of != fold
            if not test.any() or len(np.unique(y[train])) < 2:
                continue
            mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-12
            w = _fit_logistic(_design(x[train], mean, std), y[train])
            scores[test] = _design(x[test], mean, std) @ w
        values.append(auc(y, scores))
    return float(np.mean(values))


def _numeric_matrix(rows: Sequence[Mapping[str, float | str]]) -> np.ndarray:
    """Numeric features (log of the heavy-tailed ones) plus the header's fake-rate encoding."""
    columns = []
    for name in FEATURES:
        if name == "header":
            continue
        values = np.array([float(r[name]) for r in rows])
        columns.append(np.log1p(values) if name in ("file_size", "sharpness") else values)
    return np.stack(columns, axis=1)


def _header_scores(rows: Sequence[Mapping[str, float | str]], y: np.ndarray) -> np.ndarray:
    headers = [str(r["header"]) for r in rows]
    rate = {h: float(y[[i for i, g in enumerate(headers) if g == h]].mean()) for h in set(headers)}
    return np.array([rate[h] for h in headers])


def _scope_entry(rows: Sequence[Mapping[str, float | str]], y: np.ndarray) -> dict[str, float | int | bool]:
    numeric = _numeric_matrix(rows)
    header = _header_scores(rows, y)
    entry: dict[str, float | int | bool] = {}
    column = 0
    for name in FEATURES:
        if name == "header":
            entry[name] = round(auc(y, header), 4)
        else:
            entry[name] = round(auc(y, numeric[:, column]), 4)
            column += 1
    entry["logistic"] = round(logistic_cv_auc(np.c_[numeric, header], y), 4)
    entry["n_real"] = int((y == 0).sum())
    entry["n_fake"] = int((y == 1).sum())
    entry["checked"] = min(entry["n_real"], entry["n_fake"]) >= MIN_PER_CLASS
    return entry


def bias_report(rows: Sequence[Mapping[str, float | str]], labels: Sequence[int], splits: Sequence[str],
                ) -> dict[str, dict[str, float | int | bool]]:
    """``{split: {feature: AUC, ..., "logistic": AUC, "n_real": n, "n_fake": n, "checked": bool}}``, plus
    ``"all"`` (every split together) when there are several splits.

    ``rows`` are :func:`image_features` results, aligned with ``labels`` and ``splits``. Single-feature
    AUCs are not folded (0.3 means "generated images have smaller values"); ``header`` is scored by the
    fake rate of each distinct header (identical headers give exactly 0.5); ``logistic`` is the
    out-of-fold AUC of a logistic regression on all numeric features plus the header score
    (:func:`logistic_cv_auc`; only its upper side is tested). ``checked``: both classes have at least :data:`MIN_PER_CLASS` images, so the
    band is meaningful (with fewer, chance alone moves an AUC outside it).
    """
    y_all = np.asarray(labels, dtype=np.int64)
    split_array = np.asarray(splits)
    scopes = list(dict.fromkeys(splits))
    report = {}
    for scope in scopes + (["all"] if len(scopes) > 1 else []):
        mask = np.ones(len(y_all), dtype=bool) if scope == "all" and "all" not in scopes else split_array == scope
        report[scope] = _scope_entry([row for row, keep in zip(rows, mask) if keep], y_all[mask])
    return report


def _outside(entry: Mapping[str, float | int | bool], band: tuple[float, float]) -> float:
    """How far the worst AUC of an entry lies outside ``band`` (0 when inside)."""
    low, high = band
    return max(max(low - float(entry[name]) if name != "logistic" else 0.0, float(entry[name]) - high, 0.0)
               for name in (*FEATURES, "logistic"))


def match_classes(rows: Sequence[Mapping[str, float | str]], labels: Sequence[int], splits: Sequence[str], *,
                  keys: Sequence[str] | None = None, target: tuple[float, float] = (0.43, 0.57),
                  max_drop: float = 0.5) -> np.ndarray:
    """Which images to keep so that no trivial classifier separates the classes, per split and overall.

    Greedy matched subsampling on the cues themselves: while an AUC of a checked scope of
    :func:`bias_report` (a split, or all splits together) lies outside ``target``, take the scope that is
    furthest out, fit the logistic regression on its kept images and drop the image that looks most
    like its own class by those cues (the generated image with the highest score; a real one with the
    lowest when fewer generated than real images are left), then measure again. At most ``max_drop`` of
    each class of each split is dropped, and at most ``max_drop`` of each ``keys`` value (a generator
    family, a photo package) within a split, so that no family is matched away. Deterministic (no
    random draw).

    Returns a ``bool (N,)`` mask of the images to keep.
    """
    y = np.asarray(labels, dtype=np.int64)
    split_array = np.asarray(splits)
    keep = np.ones(len(y), dtype=bool)
    floors = {(split, cls): int(np.ceil((1 - max_drop) * ((split_array == split) & (y == cls)).sum()))
              for split in set(splits) for cls in (0, 1)}
    key_array = np.asarray(keys) if keys is not None else np.asarray(["" for _ in range(len(y))])
    key_floors = {(split, key): int(np.ceil((1 - max_drop) * ((split_array == split) & (key_array == key)).sum()))
                  for split, key in set(zip(splits, key_array.tolist()))}
    blocked: set[str] = set()
    while True:
        index = np.flatnonzero(keep)
        report = bias_report([rows[i] for i in index], y[index], split_array[index])
        scopes = [(scope, _outside(entry, target)) for scope, entry in report.items()
                  if entry["checked"] and scope not in blocked and _outside(entry, target) > 0]
        if not scopes:
            return keep
        scope = max(scopes, key=lambda pair: pair[1])[0]
        members = index if scope == "all" and "all" not in set(splits) else index[split_array[index] == scope]
        mine = [rows[i] for i in members]
        numeric = _numeric_matrix(mine)
        x = np.c_[numeric, _header_scores(mine, y[members])]
        design = _design(x, x.mean(axis=0), x.std(axis=0) + 1e-12)
        score = design @ _fit_logistic(design, y[members].astype(np.float64))
        left = {key: int((keep & (split_array == key[0]) & (y == key[1])).sum()) for key in floors}
        left_key = Counter(zip(split_array[index].tolist(), key_array[index].tolist()))
        removable = np.array([left[(split_array[i], y[i])] > floors[(split_array[i], y[i])]
                              and left_key[(split_array[i], key_array[i])] > key_floors[(split_array[i], key_array[i])]
                              for i in members])
        n_fake, n_real = int(y[members].sum()), int((y[members] == 0).sum())
        order = [1, 0] if n_fake >= n_real else [0, 1]
        for cls in order:
            candidates = np.flatnonzero(removable & (y[members] == cls))
            if len(candidates):
                pick = candidates[np.argmax(score[candidates])] if cls == 1 else candidates[np.argmin(score[candidates])]
                keep[members[pick]] = False
                break
        else:
            blocked.add(scope)  # every class of the scope is at its floor: report it, drop nothing more


def failures(report: Mapping[str, Mapping[str, float | int | bool]], band: tuple[float, float] = AUC_BAND) -> list[str]:
    """``"scope/feature: AUC"`` for every AUC of a checked scope of ``report`` outside ``band``
    ([] when the benchmark is sound)."""
    low, high = band
    out = []
    for scope, entry in report.items():
        if not entry.get("checked", True):
            continue
        for name in (*FEATURES, "logistic"):
            value = float(entry[name])
            if value > high or (value < low and name != "logistic"):
                out.append(f"{scope}/{name}: {value:.3f}")
    return out
