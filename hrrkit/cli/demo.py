"""``hrrkit demo``: build the wild benchmark, train HRR, its ablations and the baselines, report (CPU, minutes)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from hrrkit.demo import DETECTORS, run_demo
    from hrrkit.utils.device import resolve_device

    device = resolve_device(args.device, where="hrrkit demo")
    detectors = tuple(args.detectors.split(",")) if args.detectors else DETECTORS
    try:
        run_demo(args.out, quick=args.quick, device=device, cache_root=args.cache, detectors=detectors,
                 progress=not args.no_progress)
    except ValueError as exc:
        print(f"hrrkit demo: {exc}")
        return 2
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from hrrkit.demo import DETECTORS

    p = subparsers.add_parser(
        "demo", help="the whole job offline: wild benchmark, train HRR + baselines, evaluate with intervals, report",
        description="Builds (or reuses) the offline wild benchmark (needs hrrkit[demo]): held-out photographs vs "
        "the outputs of real text-to-image and image-edit generators, trained on content-matched regenerations "
        "of other photographs. Trains HRR, its ablations and the baselines with the same data, seeds and budget "
        "(epochs chosen on val), scores both test splits and two delivery chains, and writes report.md/json, "
        "scores.csv, ROC curves, a per-generator heat table and evidence maps.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="small benchmark, one seed, short training (under 2 minutes)")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--cache", help="parent folder of the benchmark builds and the demo's caches "
                   "(default $HRRKIT_CACHE/wild-benchmark, else ~/.cache/hrrkit/wild-benchmark)")
    p.add_argument("--detectors", help=f"comma-separated subset of {','.join(DETECTORS)} (hrr is always included)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
