"""``hrrkit data``: data set utilities. ``hrrkit data verify ROOT`` checks a data set.

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
    parser = subparsers.add_parser("data", help="data set utilities (verify)", description=__doc__)
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
