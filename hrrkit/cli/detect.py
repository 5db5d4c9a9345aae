"""``hrrkit detect PATHS... [--model DIR|NAME]``: score files, folders and globs; CSV or JSONL out.

Without ``--model`` the detector shipped inside the package scores (``hrrkit:default``: offline, no
training); ``hrrkit detect --about`` prints its model card."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


def run(args: argparse.Namespace) -> int:
    from hrrkit.eval.predict import detect_files, write_detections
    from hrrkit.models.checkpoint import CheckpointError
    from hrrkit.models.config import ConfigError
    from hrrkit.models.detector import HRRDetector
    from hrrkit.models.hub import MODEL_CARD_FILE, resolve_pretrained
    from hrrkit.utils.device import resolve_device
    from hrrkit.utils.profile import StageProfile

    if args.about:
        try:
            card = resolve_pretrained(args.model, local_files_only=True) / MODEL_CARD_FILE
        except CheckpointError as exc:
            print(f"hrrkit detect: {exc}", file=sys.stderr)
            return 2
        if not card.is_file():
            print(f"hrrkit detect: {card}: the detector has no model card", file=sys.stderr)
            return 2
        print(card.read_text(encoding="utf-8"))
        return 0
    if not args.paths:
        print("hrrkit detect: give image files, folders or globs to score (or --about)", file=sys.stderr)
        return 2
    device = resolve_device(args.device, where="hrrkit detect")
    try:
        detector = HRRDetector.from_pretrained(args.model, device=device)
    except (CheckpointError, ConfigError, FileNotFoundError) as exc:
        print(f"hrrkit detect: {exc}", file=sys.stderr)
        return 2
    profiling = args.profile or args.profile_json
    with StageProfile() if profiling else contextlib.nullcontext() as profile:
        result = detect_files(detector, args.paths, threshold=args.threshold, batch_size=args.batch_size,
                              pixel_budget=args.pixel_budget, maps_dir=args.maps, strict=args.strict,
                              progress=not args.no_progress)
    for _, why in result.missing:
        print(f"hrrkit detect: {why}", file=sys.stderr)
    if not result.rows:
        print("hrrkit detect: nothing to score", file=sys.stderr)
        return 2
    if args.out:
        out = write_detections(result.rows, args.out, args.format)
        print(f"wrote {len(result.rows)} rows to {out}", file=sys.stderr)
    else:
        for r in result.rows:
            print(json.dumps(r))
    scored, failures, threshold = result.scored, result.failures, result.threshold
    counts = {label: sum(1 for r in scored if r["label"] == label) for label in ("generated", "real", "unsure")}
    decided = f"{counts['generated']} generated, {counts['real']} real"
    if isinstance(threshold, str):  # the calibrated unsure band low..high
        decided += f", {counts['unsure']} unsure (band {threshold})"
    else:
        decided += f" at threshold {threshold:g}"
    print(f"{len(scored)} scored ({decided}); {len(failures)} unreadable", file=sys.stderr)
    from hrrkit.retrospect.registry import retrospector_label

    print(f"detector {detector.config.name}, retrospector: {retrospector_label(detector.config.retrospector)}",
          file=sys.stderr)
    if result.noted:
        print(f"{len(result.noted)} image(s) with a note (collapsed scales or too small; see the 'note' column), "
              f"e.g. {result.noted[0]['path']}: {result.noted[0]['note']}", file=sys.stderr)
    for f in failures[:20]:
        print(f"  skipped {f['path']}: {f['error']}", file=sys.stderr)
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more (see the output file)", file=sys.stderr)
    if profiling:
        _report_profile(profile, args, detector)
    return 3 if (failures or result.missing) else 0


def _report_profile(profile, args: argparse.Namespace, detector) -> None:
    """The per-stage table on stderr; with ``--profile-json``, the same as JSON with the settings."""
    from hrrkit.utils.atomic import atomic_write_json

    print(f"profile (batch size {args.batch_size}, pixel budget {args.pixel_budget}; images/s = images scored / "
          "seconds in the stage):", file=sys.stderr)
    print(profile.table(), file=sys.stderr)
    if args.profile_json:
        payload = {"detector": detector.config.name, "model": str(args.model), "batch_size": args.batch_size,
                   "pixel_budget": args.pixel_budget, "maps": args.maps is not None, **profile.as_dict()}
        atomic_write_json(args.profile_json, payload)
        print(f"wrote the profile to {args.profile_json}", file=sys.stderr)


def register(subparsers: argparse._SubParsersAction) -> None:
    from hrrkit.eval.predict import DEFAULT_PIXEL_BUDGET, DETECTION_FIELD_DOCS
    from hrrkit.models.hub import DEFAULT_DETECTOR

    columns = "\n".join(f"  {name:<13}{meaning}" for name, meaning in DETECTION_FIELD_DOCS.items())
    p = subparsers.add_parser(
        "detect", help="score images (files, folders, globs) as real or generated",
        description="Score images with a detector. Exit status: 0 every file scored; 3 some files were unreadable "
        "(listed with their reasons) or a path named no file; 2 nothing to score or the model folder is not a "
        "detector.",
        epilog=f"output columns (CSV header / JSON keys):\n{columns}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", help="image files, folders (recursive) or glob patterns")
    p.add_argument("--model", default=DEFAULT_DETECTOR,
                   help="detector folder (model.safetensors + config.json), a shipped detector (hrrkit:<name>) or a "
                   "hub repo id (default: %(default)s, shipped in the package, offline)")
    p.add_argument("--about", action="store_true", help="print the detector's model card (training data, test "
                   "figures, threshold, what it cannot see) and exit")
    p.add_argument("--out", help="output file (.csv or .jsonl); default: JSON lines on stdout")
    p.add_argument("--format", choices=("csv", "jsonl"))
    p.add_argument("--maps", help="write an evidence figure (image + per-scale contribution maps, colour bar) and "
                   "its raw arrays (.npz) per image into this folder")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the detector's calibrated "
                   "threshold or unsure band)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="most images per forward pass (default: %(default)s); --pixel-budget bounds memory")
    p.add_argument("--pixel-budget", type=int, default=DEFAULT_PIXEL_BUDGET, metavar="PIXELS",
                   help="most processed pixels (all views x all scales) per forward pass; an image above it is "
                   "scored alone (default: %(default)s; peak memory: benchmarks/detect_memory.py)")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--profile", action="store_true", help="print seconds, images/s and peak resident memory per "
                   "stage (decode, rescale, retrospection, backbone, head, evidence) on stderr")
    p.add_argument("--profile-json", metavar="FILE", help="also write that profile as JSON to FILE (implies --profile)")
    p.set_defaults(func=run)
