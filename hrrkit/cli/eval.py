"""``hrrkit eval --model DIR DATA``: metrics per generator, report, plots, threshold calibration,
robustness under perturbations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from hrrkit.data.io import ImageLoadError
    from hrrkit.data.layouts import LayoutError, read_layout
    from hrrkit.eval.predict import predict_dataset
    from hrrkit.eval.report import summarise, write_report
    from hrrkit.models.checkpoint import CheckpointError
    from hrrkit.models.detector import load_detector
    from hrrkit.utils.device import resolve_device

    device = resolve_device(args.device, where="hrrkit eval")
    if args.calibrate_fpr is not None and not args.calibrate_on:
        print("hrrkit eval: --calibrate-fpr needs --calibrate-on FOLDER (held-out data whose reals set the "
              "threshold; calibrating on the evaluated data would make its FPR optimistic)", file=sys.stderr)
        return 2
    if args.calibrate_fpr is not None and not 0.0 < args.calibrate_fpr < 1.0:
        print(f"hrrkit eval: --calibrate-fpr {args.calibrate_fpr}: must be in (0, 1), e.g. 0.05", file=sys.stderr)
        return 2
    if args.calibrate_fnr is not None and (args.calibrate_fpr is None or not 0.0 < args.calibrate_fnr < 1.0):
        print("hrrkit eval: --calibrate-fnr FNR (in (0, 1), e.g. 0.05) sets the low edge of the unsure band; it goes "
              "with --calibrate-fpr (the high edge) and --calibrate-on", file=sys.stderr)
        return 2
    if args.save_threshold and args.calibrate_fpr is None:
        print("hrrkit eval: --save-threshold stores a calibrated threshold: give --calibrate-fpr and --calibrate-on",
              file=sys.stderr)
        return 2
    try:
        perturbations = []
        if args.perturb:
            from hrrkit.eval.perturb import parse_perturbations

            perturbations = parse_perturbations(args.perturb)
        detector = load_detector(args.model, device=device)
        samples = read_layout(args.data, args.layout, split=args.split)
        held_out = read_layout(args.calibrate_on, args.layout) if args.calibrate_fpr is not None else []
        cal_samples = [s for s in held_out if s.label == 0]
        cal_fakes = [s for s in held_out if s.label == 1] if args.calibrate_fnr is not None else []
    except (CheckpointError, LayoutError, FileNotFoundError, ValueError) as exc:
        print(f"hrrkit eval: {exc}", file=sys.stderr)
        return 2
    if args.calibrate_fpr is not None and not cal_samples:
        print(f"hrrkit eval: {args.calibrate_on}: no real images to calibrate on", file=sys.stderr)
        return 2
    if args.calibrate_fnr is not None and not cal_fakes:
        print(f"hrrkit eval: {args.calibrate_on}: no generated images to calibrate the unsure band on", file=sys.stderr)
        return 2
    out = Path(args.out or Path(args.model) / "eval")
    inp = detector.config.input

    def cached(data):
        """With --retrospection-cache: read (x̃_s, x̂_s) pairs from the cache (computing each once)."""
        if not args.retrospection_cache:
            return data
        from hrrkit.retrospect.views import RetrospectedDataset, RetrospectionStage

        return RetrospectedDataset(data, RetrospectionStage(detector), args.retrospection_cache, strict=args.strict)

    def dataset(augment=None):  # a perturbation changes pixels before retrospection: never cached
        data = inp.dataset(samples, augment=augment, strict=args.strict)
        return cached(data) if augment is None else data

    try:
        dataset()
    except ValueError as exc:  # e.g. an input policy the cached path does not support
        print(f"hrrkit eval: --retrospection-cache: {exc}", file=sys.stderr)
        return 2

    threshold = args.threshold if args.threshold is not None else detector.config.threshold
    band = None
    if args.calibrate_fpr is not None:
        from hrrkit.eval.metrics import calibrate_threshold

        def scores_of(subset, desc):
            return predict_dataset(detector, cached(inp.dataset(subset)), device=device, desc=desc,
                                   progress=not args.no_progress)["scores"]

        real_scores = scores_of(cal_samples, "calibrate")
        cal = calibrate_threshold(real_scores, args.calibrate_fpr)
        threshold = cal.threshold
        print(f"calibrated threshold {cal.threshold:.6f} for FPR ≤ {cal.target_fpr:g} on {cal.n_real} reals "
              f"(achieved {cal.achieved_fpr:.4f})")
        calibration = {"target_fpr": cal.target_fpr, "achieved_fpr": cal.achieved_fpr, "n_real": cal.n_real,
                       "data": str(args.calibrate_on)}
        if args.calibrate_fnr is not None:
            from hrrkit.eval.metrics import calibrate_unsure_band

            band = calibrate_unsure_band(real_scores, scores_of(cal_fakes, "calibrate fakes"), args.calibrate_fpr,
                                         args.calibrate_fnr)
            calibration.update({"unsure": band.to_dict()})
            print(f"unsure band [{band.low:.6f}, {band.high:.6f}) for FPR ≤ {band.target_fpr:g}, FNR ≤ "
                  f"{band.target_fnr:g} on {band.n_real} reals + {band.n_fake} fakes (achieved FPR "
                  f"{band.achieved_fpr:.4f}, FNR {band.achieved_fnr:.4f}; unsure: {band.unsure_real:.1%} of reals, "
                  f"{band.unsure_fake:.1%} of fakes)")
        if args.save_threshold:
            from hrrkit.models.checkpoint import update_detector_config

            detector.config.threshold = float(cal.threshold)
            detector.config.unsure = (band.low, band.high) if band is not None else None
            detector.config.calibration = calibration
            print(f"stored the threshold{' and the unsure band' if band else ''} in "
                  f"{update_detector_config(args.model, detector.config)}")
    from hrrkit.retrospect.registry import retrospector_label

    context = {"model": str(args.model), "data": str(args.data), "split": args.split,
               "detector": detector.config.name, "retrospector": retrospector_label(detector.config.retrospector)}
    try:
        pred = predict_dataset(detector, dataset(), batch_size=args.batch_size, device=device, desc="eval",
                               progress=not args.no_progress)
    except ImageLoadError as exc:  # only with --strict; otherwise unreadable files are skipped and listed
        print(f"hrrkit eval: --strict: {exc}", file=sys.stderr)
        return 1
    unsure = detector.config.unsure if args.threshold is None or args.calibrate_fpr is not None else None
    if args.calibrate_fpr is not None and not args.save_threshold:
        unsure = (band.low, band.high) if band is not None else None
    if unsure is not None:
        from hrrkit.eval.metrics import unsure_summary

        context["unsure"] = unsure_summary(pred["labels"], pred["scores"], unsure)
        u = context["unsure"]
        print(f"unsure band [{unsure[0]:.4f}, {unsure[1]:.4f}): {u['unsure_fraction']:.1%} of images unsure; "
              f"accuracy on the decided ones {u['decided_accuracy']:.4f} (FPR {u['fpr']:.4f}, FNR {u['fnr']:.4f})")
    payload = write_report(pred, out, threshold=threshold, oracle=args.oracle,
                           title=f"{detector.config.name} on {Path(args.data).name}", context=context)
    print(summarise(payload))
    print(f"report: {out / 'report.md'}")
    failed = len(pred["skipped"])
    if perturbations:
        from hrrkit.eval.robustness import write_robustness_report

        results = {}
        for p in perturbations:
            pred_p = predict_dataset(detector, dataset(augment=p), batch_size=args.batch_size, device=device,
                                     desc=p.name, progress=not args.no_progress)
            results[p.name] = write_report(pred_p, out / "perturb" / p.name.replace(":", "_"), threshold=threshold,
                                           title=f"{detector.config.name} under {p.name}", context=context,
                                           plots=False)
        write_robustness_report(payload, results, perturbations, out)
        print(f"robustness: {out / 'robustness.md'}")
    if failed:
        print(f"{failed} unreadable file(s) skipped (listed in {out / 'report.json'})", file=sys.stderr)
    return 1 if (failed and args.strict) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a detector on a data set: metrics, report, plots")
    p.add_argument("data", help="data set folder (any supported layout) or CSV manifest")
    p.add_argument("--model", required=True, help="detector folder (model.safetensors + config.json)")
    p.add_argument("--layout", default="auto")
    p.add_argument("--split", help="evaluate only this split (e.g. test)")
    p.add_argument("--out", help="report folder (default: MODEL/eval)")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the detector's)")
    p.add_argument("--oracle", action="store_true", help="also report the optimistic best-threshold accuracy")
    p.add_argument("--calibrate-fpr", type=float, help="choose the threshold for this FPR on held-out reals")
    p.add_argument("--calibrate-fnr", type=float, help="also calibrate an unsure band: its low edge keeps the "
                   "held-out fakes' false-negative rate at most this (with --calibrate-fpr for the high edge)")
    p.add_argument("--calibrate-on", help="folder of held-out data whose reals (and, with --calibrate-fnr, fakes) "
                   "calibrate the threshold")
    p.add_argument("--save-threshold", action="store_true", help="store the calibrated threshold in the detector")
    p.add_argument("--perturb", nargs="+", metavar="KIND:V1,V2",
                   help="robustness: jpeg:30,50 blur:0.5,1 resize:0.5 crop:0.9 noise:0.01; delivery: webp:50,80 "
                        "png-roundtrip downscale-then-jpeg[:0.5] screenshot-like[:1.25] (docs/cli.md)")
    p.add_argument("--retrospection-cache", metavar="DIR",
                   help="read each image's retrospected pairs from this cache, computing missing ones once "
                        "(the folder hrrkit train's train.retrospection_cache filled serves as is)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file / exit 1 if any")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
