"""``hrrkit bench``: time reference eager, torch.compile(reference) and fused kernels."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def run(args: argparse.Namespace) -> int:
    from hrrkit.bench.registry import bench_cases
    from hrrkit.bench.runner import format_table, measure_copy_bandwidth, ratio_table, run_benchmarks
    from hrrkit.utils.device import resolve_device

    if args.list:
        for name, case in sorted(bench_cases().items()):
            print(f"{name:<24} sizes={list(case.sizes)}  {case.description}")
        return 0
    device = resolve_device(args.device, where="hrrkit bench")
    dtypes = [_DTYPES[d] for d in args.dtype.split(",")] if args.dtype else None
    out = Path(args.out) if args.out else None
    variants = [v for v in args.variants.split(",") if v]
    if device.type != "cuda" and "fused" in variants:
        # the fused kernels run on CUDA only (on CPU only interpreted, which times nothing useful)
        variants.remove("fused")
        print("fused kernels are timed on CUDA only: timing " + (", ".join(variants) or "nothing") + " on the CPU",
              file=sys.stderr)
    if not variants:
        return 0
    rows = run_benchmarks(
        args.op or None, device=device, dtypes=dtypes, size_name=args.size, variants=variants,
        modes=args.modes.split(","), out=out, min_run_time=args.min_run_time, progress=not args.no_progress,
    )
    bandwidth = None
    if device.type == "cuda" and args.copy_bandwidth:
        copy = measure_copy_bandwidth(device)
        bandwidth = copy["gbps"]
        if out is not None:
            with open(out, "a") as fh:
                fh.write(json.dumps(copy) + "\n")
    errors = [r for r in rows if r.error]
    print(format_table(ratio_table(rows), bandwidth))
    if bandwidth:
        print(f"\ncopy bandwidth ceiling on {device}: {bandwidth:.0f} GB/s")
    for r in errors:
        print(f"note: {r.op} {r.variant} {r.mode}: {r.error}")
    if out is not None:
        print(f"\nwrote {len(rows)} rows to {out}")
    if args.json:
        payload = json.dumps([dataclasses.asdict(r) for r in rows], indent=2)
        if args.json == "-":
            print(payload)
        else:
            Path(args.json).write_text(payload + "\n")
            print(f"wrote {len(rows)} rows as JSON to {args.json}")
    hard = [r for r in errors if not r.error.startswith("RuntimeError: fused kernels are timed on CUDA only")]
    return 1 if hard and args.strict else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark fused kernels against the reference and torch.compile")
    p.add_argument("--op", action="append", help="op to benchmark (repeatable; default: all)")
    p.add_argument("--list", action="store_true", help="list the registered cases and exit")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    p.add_argument("--dtype", help="comma-separated dtypes (default: each case's own)")
    p.add_argument("--size", help="size name: tiny, cpu or target (default: target on cuda, cpu on cpu)")
    p.add_argument("--variants", default="eager,compiled,fused", help="subset of eager,compiled,fused")
    p.add_argument("--modes", default="fwd,bwd,fwd+bwd", help="subset of fwd,bwd,fwd+bwd")
    p.add_argument("--out", help="append JSON rows to this file (JSON Lines)")
    p.add_argument("--json", metavar="PATH", help="write the rows as one JSON list to PATH ('-': print them)")
    p.add_argument("--min-run-time", type=float, default=0.2, help="seconds per CPU measurement")
    p.add_argument("--no-copy-bandwidth", dest="copy_bandwidth", action="store_false",
                   help="skip the device-to-device copy that measures the bandwidth ceiling (cuda)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any timing failed")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
