"""``hrrkit zero-shot``: the training-free AEROBLADE-style score (distance between an image and its
latent-diffusion autoencoder reconstruction, minimum over the autoencoders; docs/aligned.md).

Two uses, as ``hrrkit detect`` and ``hrrkit eval`` for trained detectors:

* ``hrrkit zero-shot PATHS... --vae PATH`` scores files, folders and globs: JSON lines on stdout or a
  ``.csv``/``.jsonl`` file (``--out``);
* ``hrrkit zero-shot --eval DATA --vae PATH --out DIR`` scores a labelled data set (any layout) and
  writes the usual report (AUC, AP, per generator, ROC/PR, scores.csv).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROW_FIELDS = ("path", "score", "distance", "autoencoder", "distances", "height", "width", "label", "error")


def _score_files(scorer, files, progress: bool, desc: str):
    """``(path, ZeroShotResult | None, error)`` for each file, in order."""
    import numpy as np
    from tqdm.auto import tqdm

    from hrrkit.data.io import ImageLoadError, load_image

    for file in tqdm(files, desc=desc, unit="img", disable=not progress):
        try:
            yield file, scorer.score_array(np.asarray(load_image(file))), None
        except (ImageLoadError, ValueError) as exc:
            yield file, None, str(exc)


def _write_rows(rows, out: Path) -> None:
    from hrrkit.utils.atomic import atomic_path

    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        if out.suffix == ".csv":
            writer = csv.DictWriter(fh, fieldnames=ROW_FIELDS, extrasaction="ignore")
            writer.writeheader()
            for r in rows:
                writer.writerow({**r, "distances": json.dumps(r["distances"]) if r.get("distances") else ""})
        else:
            for r in rows:
                fh.write(json.dumps(r) + "\n")


def run(args: argparse.Namespace) -> int:
    from hrrkit.models.zero_shot import ZeroShotScorer
    from hrrkit.retrospect.aligned import DEFAULT_TILE_SIZE, load_autoencoders
    from hrrkit.retrospect.loading import WeightsLoadError
    from hrrkit.utils.device import resolve_device

    if bool(args.paths) == bool(args.eval):
        print("hrrkit zero-shot: give image PATHS to score, or --eval DATA for a labelled data set (not both)",
              file=sys.stderr)
        return 2
    if (args.calibrate_fpr is None) != (args.calibrate_on is None):
        print("hrrkit zero-shot: --calibrate-fpr and --calibrate-on go together", file=sys.stderr)
        return 2
    device = resolve_device(args.device, where="hrrkit zero-shot")
    tile = DEFAULT_TILE_SIZE if args.tile_size is None else (args.tile_size or None)
    try:
        scorer = ZeroShotScorer(load_autoencoders(args.vae, tile_size=tile, device=device), distance=args.distance,
                                layer=args.layer, device=device)
    except (WeightsLoadError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"hrrkit zero-shot: {exc}", file=sys.stderr)
        return 2
    progress = not args.no_progress
    threshold = args.threshold
    if args.calibrate_fpr is not None:
        from hrrkit.data.io import list_image_files
        from hrrkit.eval.metrics import calibrate_threshold

        try:
            reals = list_image_files(args.calibrate_on)
        except FileNotFoundError as exc:
            print(f"hrrkit zero-shot: --calibrate-on: {exc}", file=sys.stderr)
            return 2
        scores = [r.score for _, r, _ in _score_files(scorer, reals, progress, "calibrate") if r is not None]
        if not scores:
            print(f"hrrkit zero-shot: {args.calibrate_on}: no readable real photos to calibrate on", file=sys.stderr)
            return 2
        cal = calibrate_threshold(scores, args.calibrate_fpr)
        threshold = cal.threshold
        print(f"calibrated threshold {cal.threshold:.6f} for FPR <= {cal.target_fpr:g} on {cal.n_real} reals "
              f"(achieved {cal.achieved_fpr:.4f})", file=sys.stderr)
    if args.eval:
        return _evaluate(args, scorer, threshold, progress)

    from hrrkit.eval.predict import expand_paths

    files, missing = expand_paths(args.paths)
    for _, why in missing:
        print(f"hrrkit zero-shot: {why}", file=sys.stderr)
    if not files:
        print("hrrkit zero-shot: nothing to score", file=sys.stderr)
        return 2
    rows = []
    for file, result, error in _score_files(scorer, files, progress, "zero-shot"):
        row = {"path": file.as_posix(), **(result.to_dict() if result else {}), "error": error}
        if result is not None and threshold is not None:
            row["label"] = "generated" if result.score >= threshold else "real"
        rows.append(row)
    if args.out:
        _write_rows(rows, Path(args.out))
        print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    else:
        for r in rows:
            print(json.dumps(r))
    failures = [r for r in rows if r["error"]]
    print(f"{len(rows) - len(failures)} scored ({scorer.describe()}); {len(failures)} unreadable", file=sys.stderr)
    return 3 if (failures or missing) else 0


def _evaluate(args: argparse.Namespace, scorer, threshold: float | None, progress: bool) -> int:
    import numpy as np

    from hrrkit.data.layouts import LayoutError, read_layout
    from hrrkit.eval.report import summarise, write_report

    try:
        samples = read_layout(args.eval, args.layout, split=args.split)
    except (LayoutError, FileNotFoundError) as exc:
        print(f"hrrkit zero-shot: {exc}", file=sys.stderr)
        return 2
    pred: dict = {"scores": [], "labels": [], "paths": [], "generators": [], "sources": [], "skipped": []}
    for sample, (_, result, error) in zip(samples, _score_files(scorer, [s.path for s in samples], progress, "eval")):
        if result is None:
            pred["skipped"].append({"path": sample.path.as_posix(), "error": "unreadable", "reason": error})
            continue
        pred["scores"].append(result.score)
        pred["labels"].append(sample.label)
        pred["paths"].append(sample.path.as_posix())
        pred["generators"].append(sample.generator)
        pred["sources"].append(sample.source)
    pred["scores"] = np.asarray(pred["scores"], dtype=np.float64)
    pred["labels"] = np.asarray(pred["labels"], dtype=np.int64)
    out = Path(args.out or "zero-shot-report")
    context = {"detector": "zero-shot", "retrospector": f"autoencoder round trip ({scorer.describe()})",
               "data": str(args.eval), "split": args.split, "threshold_calibrated": args.calibrate_fpr is not None}
    payload = write_report(pred, out, threshold=0.5 if threshold is None else threshold,
                           title=f"zero-shot ({scorer.distance_name}) on {Path(args.eval).name}", context=context)
    print(summarise(payload))
    if threshold is None:
        print("(no threshold given: accuracies are at score 0.5, which means nothing for this score; "
              "use --calibrate-fpr with --calibrate-on, or --threshold)", file=sys.stderr)
    print(f"report: {out / 'report.md'}")
    return 1 if pred["skipped"] else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from hrrkit.models.zero_shot import DEFAULT_LAYER, DISTANCES

    p = subparsers.add_parser(
        "zero-shot", help="training-free score: distance to the image's own autoencoder reconstruction (AEROBLADE)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="score = 1 - distance/4 in [0, 1], higher = more likely generated (not a probability). Exit status: "
        "0 all scored; 1 (--eval) / 3 (PATHS) some files unreadable; 2 bad arguments or weights.",
    )
    p.add_argument("paths", nargs="*", help="image files, folders (recursive) or globs to score")
    p.add_argument("--eval", metavar="DATA", help="a labelled data set (any layout or CSV) to evaluate instead")
    p.add_argument("--vae", action="append", required=True, metavar="[NAME=]PATH",
                   help="an AutoencoderKL (pipeline folder, AutoencoderKL folder or .safetensors); repeat for several")
    p.add_argument("--distance", choices=DISTANCES, default="lpips-lite0",
                   help="lpips-lite0: LPIPS-style on ImageNet EfficientNet-Lite0 features; l2: pixel MSE")
    p.add_argument("--layer", type=int, default=DEFAULT_LAYER, help="Lite0 level for lpips-lite0 (default %(default)s)")
    p.add_argument("--out", help="PATHS: a .csv or .jsonl file (default: JSON lines on stdout); --eval: the report "
                   "folder (default: zero-shot-report)")
    p.add_argument("--layout", default="auto", help="--eval: the data set's layout (default: detect it)")
    p.add_argument("--split", help="--eval: only this split (e.g. test)")
    p.add_argument("--threshold", type=float, help="score at or above which an image is called generated")
    p.add_argument("--calibrate-fpr", type=float, help="choose the threshold for this FPR on --calibrate-on's reals")
    p.add_argument("--calibrate-on", help="folder of held-out real photos for --calibrate-fpr")
    p.add_argument("--tile-size", type=int, default=None, metavar="PX",
                   help="reconstruct sides above PX in tiles (default: 1024; 0 = never tile)")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
