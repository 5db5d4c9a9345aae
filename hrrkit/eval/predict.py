"""Scoring: a data set (:func:`predict_dataset`), files and folders (:func:`detect_files`), and the
rule that turns per-view logits into one probability per image (:func:`image_probabilities`).

``hrrkit eval``, ``hrrkit detect``, the trainer's validation, the demo and the recipes all score
through these functions, so a score means the same thing everywhere.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hrrkit.data.dataset import ImageDataset, SizeBucketBatchSampler, SkipLog, collate_samples

__all__ = [
    "DETECTION_FIELDS",
    "Detections",
    "detect_files",
    "expand_paths",
    "image_probabilities",
    "image_scores",
    "predict_dataset",
    "write_detections",
]


def image_probabilities(logits: torch.Tensor, owner: torch.Tensor | None, num_images: int) -> torch.Tensor:
    """(num_images,) probability of generated from per-view logits: the views (crops, tiles) of one
    image are averaged in logit space; ``owner[v]`` is the image of view v (``None``: one view each)."""
    logits = logits.detach().float().reshape(-1)
    if owner is None:
        return torch.sigmoid(logits)
    owner = owner.to(logits.device)
    sums = torch.zeros(num_images, device=logits.device).index_add_(0, owner, logits)
    counts = torch.bincount(owner, minlength=num_images).to(logits.device).float()
    return torch.sigmoid(sums / counts)


def image_scores(logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """Probability that each image of a collated batch is generated (tiles averaged in logit space)."""
    return image_probabilities(logits, batch.get("tile_owner"), len(batch["paths"]))


@torch.no_grad()
def predict_dataset(
    model: nn.Module, dataset: ImageDataset, *, batch_size: int = 16, device: torch.device | str = "cpu",
    num_workers: int = 0, progress: bool = True, desc: str = "score", skip_log: SkipLog | None = None,
) -> dict[str, Any]:
    """Score every readable image of ``dataset``.

    Returns a dict with ``scores`` (float64 numpy, probability of generated), ``labels``, ``paths``,
    ``generators``, ``sources`` (lists aligned with ``scores``) and ``skipped`` (unreadable files).
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(
        dataset, batch_sampler=SizeBucketBatchSampler(dataset.header_sizes(), batch_size),
        collate_fn=getattr(dataset, "collate", collate_samples),  # cached retrospection batches its own views
        num_workers=num_workers,
    )
    skip_log = skip_log if skip_log is not None else SkipLog()
    out: dict[str, list] = {"scores": [], "labels": [], "paths": [], "generators": [], "sources": []}
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        skip_log.update(batch)
        if batch["images"] is None:
            continue
        output = model(batch["images"].to(device))
        out["scores"] += image_scores(output.logits, batch).cpu().double().tolist()
        out["labels"] += batch["labels"].tolist()
        out["paths"] += batch["paths"]
        out["generators"] += batch["generators"]
        out["sources"] += batch["sources"]
    model.train(was_training)
    result: dict[str, Any] = {k: v for k, v in out.items()}
    result["scores"] = np.asarray(out["scores"], dtype=np.float64)
    result["labels"] = np.asarray(out["labels"], dtype=np.int64)
    result["skipped"] = skip_log.entries
    return result


# ----------------------------------------------------------------------------- files and folders


def expand_paths(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files named by ``paths`` (files, folders searched recursively, globs), each once, in order;
    and the arguments that named nothing, with why."""
    from hrrkit.data.io import list_image_files

    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for p in map(str, paths):
        path = Path(p)
        if path.is_file():
            files.append(path)  # an explicit file is scored (or reported) whatever its extension
            continue
        try:
            found = list_image_files(p)
        except (FileNotFoundError, NotADirectoryError) as exc:
            missing.append((p, str(exc)))
            continue
        if not found:
            missing.append((p, f"{p}: no image files found"))
        files += found
    seen: set[str] = set()
    unique = []
    for f in files:
        key = os.path.abspath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, missing


# the columns of a detection row, in output order (``maps`` only when maps are written)
DETECTION_FIELDS = ("path", "score", "label", "threshold", "scale_scores", "note", "error")

# what each column means: `hrrkit detect --help`, docs/cli.md and the tests read this one text
DETECTION_FIELD_DOCS = {
    "path": "the file, as found",
    "score": "probability that the image is generated: sigmoid of the head applied to the descriptor "
             "fused across scales (the mean of the per-scale descriptors; tiles averaged in logit space)",
    "label": "generated if score >= threshold, else real; with a calibrated unsure band (low, high): "
             "real below low, generated at or above high, unsure between",
    "threshold": "the decision threshold used (or low..high of the unsure band)",
    "scale_scores": "{scale: sigmoid(head(that scale's descriptor alone))}, what the scale-consistency "
                    "term compares in training; the head is non-linear, so score is not their mean and can "
                    "lie outside their range: read them as agreement between scales, not as parts of score",
    "note": "warnings for this image (scales that collapsed to one view, a tiny image), '; '-separated",
    "error": "why the file could not be scored (then score, label and scale_scores are empty)",
    "maps": "with --maps: the evidence figure (PNG) and its raw arrays (NPZ)",
}

# processed pixels (all views x all scales) per forward pass; an image above the budget is scored
# alone. The networks take at most DEFAULT_CALL_PIXELS per call whatever this is; what grows with it
# is the views, enhanced views, reconstructions and residuals of the pass, all held at once: 2 MP
# instead of 6 MP took hrr reading whole images from 1386 to 1113 MB on 13 photos and from 1035 to
# 855 MB on 64 of 256 px (benchmarks/detect_memory.py).
DEFAULT_PIXEL_BUDGET = 2_000_000


@dataclass
class Detections:
    """What :func:`detect_files` returns.

    Attributes:
        rows: one dict per file, in the order the files were given: ``path``, ``score``
            (probability of generated), ``label`` (``generated``/``real``), ``threshold``,
            ``scale_scores`` (``{scale: score}``), ``error`` (``None``, or why the file was
            unreadable — then score, label and scale_scores are ``None``), ``note`` (warnings,
            ``"; "``-joined, ``""`` when none) and, with maps, ``maps`` (the written PNG and NPZ).
        missing: ``(argument, why)`` for each path argument that named no file.
        threshold: the decision threshold used.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    threshold: float = 0.5

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["error"] is not None]

    @property
    def scored(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["error"] is None]

    @property
    def noted(self) -> list[dict[str, Any]]:
        """Scored rows that carry a warning (collapsed scales, tiny images)."""
        return [r for r in self.scored if r["note"]]


def detect_files(
    detector, paths: Sequence[str | os.PathLike], *, threshold: float | None = None, batch_size: int = 16,
    pixel_budget: int = DEFAULT_PIXEL_BUDGET, maps_dir: str | os.PathLike | None = None, strict: bool = False,
    progress: bool = False,
) -> Detections:
    """Score image files, folders (recursive) and glob patterns with ``detector`` (an
    :class:`~hrrkit.models.detector.HRRDetector`).

    A forward pass takes at most ``batch_size`` images and at most ``pixel_budget`` processed pixels
    (every view at every scale, :meth:`~hrrkit.models.detector.HRRDetector.view_pixels`), so memory
    stays bounded whatever the image sizes; an image over the budget goes alone. Unreadable files
    become rows with an ``error`` (``strict``: scoring stops at the first one); with ``maps_dir``, an
    evidence figure and its arrays are written there as ``<file name>_evidence.png`` / ``.npz``.
    """
    from tqdm.auto import tqdm

    from hrrkit.data.io import ImageLoadError, load_image
    from hrrkit.eval.evidence import MAPS_CAPTION, MAPS_UNIT, save_evidence
    from hrrkit.utils.memory import release_freed_memory
    from hrrkit.utils.profile import active_profile, stage

    profile = active_profile()  # a StageProfile around this call divides its stage times by these images

    if batch_size < 1 or pixel_budget < 1:
        raise ValueError(f"detect_files: batch_size and pixel_budget must be >= 1, got {batch_size}, {pixel_budget}")
    files, missing = expand_paths(paths)
    band = detector.config.unsure if threshold is None else None
    shown_threshold = f"{band[0]:g}..{band[1]:g}" if band is not None else (
        detector.config.threshold if threshold is None else float(threshold))
    result = Detections(missing=missing, threshold=shown_threshold)
    maps_dir = Path(maps_dir) if maps_dir is not None else None
    rows: dict[str, dict[str, Any]] = {}
    pending: list[tuple[Path, Any]] = []
    pending_pixels = 0
    map_stems: set[str] = set()

    def map_stem(path: Path) -> str:
        # the file name with its extension (a.png and a.jpg differ), made unique across folders
        stem, n = path.name, 1
        while stem in map_stems:
            n += 1
            stem = f"{path.name}-{n}"
        map_stems.add(stem)
        return stem

    def flush() -> None:
        nonlocal pending_pixels
        if not pending:
            return
        preds = detector.predict([img for _, img in pending], threshold=threshold, with_maps=maps_dir is not None)
        for (path, _), pred in zip(pending, preds):
            row = {"path": str(path), "score": pred["score"], "label": pred["label"], "threshold": shown_threshold,
                   "scale_scores": pred["scale_scores"], "note": "; ".join(pred["notes"]), "error": None}
            if maps_dir is not None:
                pred["maps_unit"], pred["maps_caption"] = MAPS_UNIT, MAPS_CAPTION
                with stage("evidence"):
                    row["maps"] = save_evidence(pred, maps_dir, map_stem(path), title=path.name)
            rows[str(path)] = row
        if profile is not None:
            profile.count_images(len(pending))
        pending.clear()
        pending_pixels = 0
        release_freed_memory()  # what this batch freed, before the next one's peak adds to it

    for path in tqdm(files, desc="detect", unit="image", disable=not progress):
        try:
            with stage("decode"):
                img = load_image(path, max_pixels=detector.config.input.max_pixels)
        except ImageLoadError as exc:
            rows[str(path)] = {"path": str(path), "score": None, "label": None, "threshold": shown_threshold,
                               "scale_scores": None, "note": "", "error": f"{type(exc).__name__}: {exc.reason}"}
            if strict:
                break
            continue
        cost = detector.view_pixels(*img.size)
        if pending and pending_pixels + cost > pixel_budget:
            flush()
        pending.append((path, img))
        pending_pixels += cost
        if len(pending) >= batch_size:
            flush()
    flush()
    result.rows = [rows[str(f)] for f in files if str(f) in rows]  # the order the files were given
    return result


def write_detections(rows: Sequence[dict[str, Any]], out: str | os.PathLike, out_format: str | None = None) -> Path:
    """Write detection rows atomically as CSV (``scale_scores`` as JSON, ``maps`` ``;``-joined) or
    JSON lines; ``out_format`` defaults to the file's extension (``.csv``, else JSON lines)."""
    from hrrkit.utils.atomic import atomic_path

    out = Path(out)
    out_format = out_format or ("csv" if out.suffix == ".csv" else "jsonl")
    if out_format not in ("csv", "jsonl"):
        raise ValueError(f"write_detections: format {out_format!r}: choose csv or jsonl")
    with atomic_path(out) as tmp:
        with open(tmp, "w", newline="") as fh:
            if out_format == "csv":
                fieldnames = list(DETECTION_FIELDS) + (["maps"] if any("maps" in r for r in rows) else [])
                writer = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
                writer.writeheader()
                for r in rows:
                    writer.writerow({**r, "scale_scores": "" if r["scale_scores"] is None else json.dumps(r["scale_scores"]),
                                     "maps": ";".join(r.get("maps") or [])})
            else:
                for r in rows:
                    fh.write(json.dumps(r) + "\n")
    return out
