"""``hrrkit demo``: build the offline mini-benchmark, train HRR and baselines, report (CPU, minutes)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:

    from hrrkit.demo import DETECTORS, run_demo
    from hrrkit.utils.device import resolve_device

    device = resolve_device(args.device, where="hrrkit demo")
    detectors = tuple(args.detectors.split(",")) if args.detectors else DETECTORS
    run_demo(args.out, quick=args.quick, seed=args.seed, device=device, cache_root=args.cache,
             detectors=detectors, progress=not args.no_progress)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole job offline: mini-benchmark, train HRR + baselines, evaluate, report",
        description="Builds (or reuses) the offline mini-benchmark, trains HRR, the DIRE-style baseline and "
        "two ablations on one generator, evaluates on the seen generator, a held-out generator and unseen "
        "image sizes, and writes a report with tables, ROC plots and evidence maps.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="small benchmark, short training (under 2 minutes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--cache", help="parent folder of mini-benchmark builds (default $HRRKIT_CACHE/mini-benchmark or ~/.cache/hrrkit/mini-benchmark)")
    p.add_argument("--detectors", help=f"comma-separated subset of {','.join(('hrr', 'dire', 'hrr_no_msr', 'hrr_no_afr'))}")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
