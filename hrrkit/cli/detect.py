"""``hrrkit detect PATHS... --model DIR``: score files, folders and globs; CSV or JSONL out."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path


def _expand(paths: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files named by ``paths`` (files, folders searched recursively, globs), each once, in order;
    and the arguments that named nothing, with why."""
    from hrrkit.data.io import list_image_files

    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for p in paths:
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


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from hrrkit.data.io import ImageLoadError, load_image
    from hrrkit.models.checkpoint import CheckpointError
    from hrrkit.models.detector import load_detector
    from hrrkit.utils.atomic import atomic_path

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        detector = load_detector(args.model, device=device)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"hrrkit detect: {exc}", file=sys.stderr)
        return 2
    files, missing = _expand(args.paths)
    for _, why in missing:
        print(f"hrrkit detect: {why}", file=sys.stderr)
    if not files:
        print("hrrkit detect: nothing to score", file=sys.stderr)
        return 2
    threshold = args.threshold if args.threshold is not None else detector.config.threshold
    out_format = args.format or ("csv" if (args.out and args.out.endswith(".csv")) else "jsonl")
    rows: list[dict] = []
    failures: list[dict] = []
    maps_dir = Path(args.maps) if args.maps else None
    pending: list[tuple[Path, object]] = []
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
        if not pending:
            return
        preds = detector.predict([img for _, img in pending], threshold=threshold, with_maps=maps_dir is not None)
        for (path, _), pred in zip(pending, preds):
            row = {"path": str(path), "score": pred["score"], "label": pred["label"], "threshold": threshold,
                   "scale_scores": pred["scale_scores"], "error": None}
            if maps_dir is not None:
                row["maps"] = detector.save_evidence_maps(pred, maps_dir, map_stem(Path(path)))
            rows.append(row)
        pending.clear()

    for path in tqdm(files, desc="detect", unit="image", disable=args.no_progress):
        try:
            img = load_image(path, max_pixels=detector.config.input.max_pixels)
        except ImageLoadError as exc:
            failures.append({"path": str(path), "score": None, "label": None, "threshold": threshold,
                             "scale_scores": None, "error": f"{type(exc).__name__}: {exc.reason}"})
            if args.strict:
                break
            continue
        pending.append((path, img))
        if len(pending) >= args.batch_size:
            flush()
    flush()
    order = {str(f): i for i, f in enumerate(files)}
    all_rows = sorted(rows + failures, key=lambda r: order[r["path"]])  # the order the files were given
    if args.out:
        out = Path(args.out)
        with atomic_path(out) as tmp:
            with open(tmp, "w", newline="") as fh:
                if out_format == "csv":
                    fieldnames = ["path", "score", "label", "threshold", "scale_scores", "error"]
                    if maps_dir is not None:
                        fieldnames.append("maps")
                    writer = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
                    writer.writeheader()
                    for r in all_rows:
                        writer.writerow({**r, "scale_scores": "" if r["scale_scores"] is None else json.dumps(r["scale_scores"]),
                                         "maps": ";".join(r.get("maps") or [])})
                else:
                    for r in all_rows:
                        fh.write(json.dumps(r) + "\n")
        print(f"wrote {len(all_rows)} rows to {out}", file=sys.stderr)
    else:
        for r in all_rows:
            print(json.dumps(r))
    n_fake = sum(1 for r in rows if r["label"] == "generated")
    print(f"{len(rows)} scored ({n_fake} generated, {len(rows) - n_fake} real at threshold {threshold:g}); "
          f"{len(failures)} unreadable", file=sys.stderr)
    for f in failures[:20]:
        print(f"  skipped {f['path']}: {f['error']}", file=sys.stderr)
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more (see the output file)", file=sys.stderr)
    return 3 if (failures or missing) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect", help="score images (files, folders, globs) as real or generated",
        description="Exit status: 0 every file scored; 3 some files were unreadable (listed with their reasons) or a "
        "path named no file; 2 nothing to score or the model folder is not a detector.",
    )
    p.add_argument("paths", nargs="+", help="image files, folders (recursive) or glob patterns")
    p.add_argument("--model", required=True, help="detector folder (model.safetensors + config.json)")
    p.add_argument("--out", help="output file (.csv or .jsonl); default: JSON lines on stdout")
    p.add_argument("--format", choices=("csv", "jsonl"))
    p.add_argument("--maps", help="save per-scale evidence maps as PNG into this folder")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the detector's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
