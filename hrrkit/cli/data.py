"""``hrrkit data``: data set utilities. ``hrrkit data verify ROOT`` checks a data set; ``hrrkit data align
REAL_DIR --vae PATH --out DIR`` builds aligned real/reconstruction pairs (docs/aligned.md).

Exit status of ``verify``: 0 when every file decodes and there is no label conflict or train/test
leak (plain duplicates are reported but allowed); 1 when problems were found (with ``--strict``,
duplicates count as problems too); 2 when ROOT is missing or not a recognised layout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MANIFEST_NAME = "hrrkit-manifest.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="data set utilities (verify, align)", description=__doc__)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])

    verify = actions.add_parser(
        "verify",
        help="count, decode and hash every file; find duplicates and train/test leaks",
        description="Count files per split/class/generator, decode every file under the loading "
        "policy, and find duplicates, real/fake label conflicts and train/test leaks by content hash.",
    )
    verify.add_argument("root", type=Path, help="the data folder (or a CSV manifest)")
    verify.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "forensynths", "genimage", "diffusionforensics", "flat", "csv"],
        help="the folder layout (default: detect it)",
    )
    verify.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help=f"where to write the JSON manifest with per-file hashes (default: ROOT/{MANIFEST_NAME})",
    )
    verify.add_argument("--no-manifest", action="store_true", help="do not write a manifest")
    verify.add_argument("--json", action="store_true", help="print the summary as JSON (for programs)")
    verify.add_argument("--no-decode", action="store_true", help="hash and read headers only (faster)")
    verify.add_argument("--strict", action="store_true", help="also fail (exit 1) on plain duplicates")
    verify.add_argument("--workers", type=int, default=None, help="decoding threads (default: min(8, CPUs))")
    verify.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="pixel limit per image (default: the loader's, 100 MP or HRRKIT_MAX_PIXELS; 0 = none)",
    )
    verify.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    verify.set_defaults(func=run_verify)

    align = actions.add_parser(
        "align",
        help="aligned training data: real photos and their autoencoder reconstructions (docs/aligned.md)",
        description="Crop every photo under REAL_DIR to a multiple of 8 px (top-left, no resize), reconstruct it "
        "with each latent-diffusion autoencoder (AutoencoderKL, fp32), and write both as PNG under one name in "
        "hrrkit's flat layout: OUT/<split>/real/<name>.png and OUT/<split>/fake/<autoencoder>/<name>.png, with "
        "OUT/aligned.json (sizes, JPEG settings, seconds per image). A rerun skips what exists. Exit status: 0 "
        "every photo done; 1 some photos unreadable (listed); 2 bad arguments or weights.",
    )
    align.add_argument("real_dir", type=Path, help="folder of real photos (searched recursively)")
    align.add_argument("--vae", action="append", required=True, metavar="[NAME=]PATH",
                       help="an AutoencoderKL: diffusers pipeline folder (its vae/), AutoencoderKL folder or "
                       ".safetensors file; repeat for several; NAME (default: the folder name) names fake/NAME/")
    align.add_argument("--out", type=Path, required=True, help="output folder (resumed when it exists)")
    align.add_argument("--jpeg-match", action="store_true",
                       help="JPEG-compress each reconstruction at its photo's estimated quality and chroma "
                       "subsampling (JPEG photos only)")
    align.add_argument("--val-fraction", type=float, default=0.1, help="share of photos in val/ (default 0.1)")
    align.add_argument("--test-fraction", type=float, default=0.1, help="share of photos in test/ (default 0.1)")
    align.add_argument("--tile-size", type=int, default=None, metavar="PX",
                       help="reconstruct sides above PX in overlapping tiles (default: 1024; 0 = never tile)")
    align.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    align.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    align.set_defaults(func=run_align)


def run_align(args: argparse.Namespace) -> int:
    from hrrkit.data.aligned import build_aligned_dataset
    from hrrkit.retrospect.aligned import DEFAULT_TILE_SIZE, load_autoencoders
    from hrrkit.retrospect.loading import WeightsLoadError
    from hrrkit.utils.device import resolve_device

    tile = DEFAULT_TILE_SIZE if args.tile_size is None else (args.tile_size or None)
    try:
        device = resolve_device(args.device, where="hrrkit data align")
        autoencoders = load_autoencoders(args.vae, tile_size=tile, device=device)
        summary = build_aligned_dataset(args.real_dir, autoencoders, args.out, jpeg_match=args.jpeg_match,
                                        val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                        progress=not args.no_progress)
    except (WeightsLoadError, FileNotFoundError, ValueError) as exc:
        print(f"hrrkit data align: {exc}", file=sys.stderr)
        return 2
    cost = ", ".join(f"{name} {s:.3f} s" for name, s in summary.seconds_per_image.items()) or "nothing reconstructed"
    print(f"{summary.photos} photos: {summary.written} files written, {summary.skipped_existing} already done, "
          f"{len(summary.failed)} unreadable; seconds per image this run: {cost}")
    print(f"aligned data: {args.out} (flat layout; train with examples/configs/aligned.yaml); record: {summary.manifest}")
    for path, reason in summary.failed[:20]:
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


def run_verify(args: argparse.Namespace) -> int:
    from hrrkit.data.layouts import LayoutError
    from hrrkit.data.verify import verify_dataset, write_manifest

    max_pixels = ... if args.max_pixels is None else (None if args.max_pixels == 0 else args.max_pixels)
    try:
        report = verify_dataset(
            args.root,
            layout=args.layout,
            decode=not args.no_decode,
            workers=args.workers,
            max_pixels=max_pixels,
            progress=False if args.no_progress or args.json else None,
        )
    except LayoutError as exc:
        print(f"hrrkit data verify: {exc}", file=sys.stderr)
        return 2

    manifest_path = None
    if not args.no_manifest:
        default_dir = args.root.parent if args.root.is_file() else args.root
        target = args.manifest or default_dir / MANIFEST_NAME
        try:
            manifest_path = write_manifest(report, target)
        except OSError as exc:
            print(f"hrrkit data verify: cannot write the manifest {target}: {exc}", file=sys.stderr)
            return 2

    failed = not report.ok or (args.strict and bool(report.duplicates))
    if args.json:
        summary = report.summary_dict()
        summary["manifest"] = manifest_path.as_posix() if manifest_path else None
        summary["exit_status"] = int(failed)
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report.format_text())
        if manifest_path:
            print(f"manifest: {manifest_path}")
    return int(failed)
