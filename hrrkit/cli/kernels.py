"""``hrrkit kernels``: compile every fused-kernel specialisation ahead of time for GPU targets.

Needs no GPU and no network: Triton's compiler and the ``ptxas`` it ships run on the CPU. Prints
a table (kernel, specialisation, arch, ok, registers, spill bytes, shared memory, what ``tl.dot``
lowered to, estimated occupancy) and can write it as JSON. Exit status 1 when any specialisation
fails to compile, spills registers or needs more shared memory than the arch allows per block.
"""

from __future__ import annotations

import argparse
import os
import sys


def _archs(text: str) -> list[int]:
    from hrrkit.bench.aot import ARCH_LIMITS

    archs = []
    for part in text.split(","):
        part = part.strip().lower().removeprefix("sm_")
        if not part.isdigit() or int(part) not in ARCH_LIMITS:
            raise argparse.ArgumentTypeError(
                f"unknown arch {part!r}: choose from {', '.join(f'sm_{a}' for a in ARCH_LIMITS)}"
            )
        archs.append(int(part))
    return archs


def run(args: argparse.Namespace) -> int:
    from hrrkit.bench import aot

    # Triton 3.9 warns that its fp-fusion default will change; keep today's default, quietly
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        # Triton decided at import time to interpret every kernel; compile in a clean process
        proc = aot.run_subprocess(sys.argv[sys.argv.index("kernels") + 1 :] if "kernels" in sys.argv else [])
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        print(f"hrrkit kernels: Triton is not importable ({exc}); install it with `pip install triton`",
              file=sys.stderr)
        return 2
    rep = aot.report(args.op or None, args.arch, jobs=args.jobs, subset=args.subset)
    if args.json == "-":
        print(aot.dumps(rep))
    else:
        print(aot.summary_markdown(rep) if args.markdown else aot.format_table(rep))
        if args.json:
            with open(args.json, "w") as fh:
                fh.write(aot.dumps(rep) + "\n")
    bad = aot.problems(rep)
    if bad:
        print(f"\n{len(bad)} problem(s):", file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "kernels", help="compile every fused kernel ahead of time for sm_80/sm_90 (no GPU needed) and report"
    )
    p.add_argument("--arch", type=_archs, default=[80, 90], help="comma-separated targets (default sm_80,sm_90)")
    p.add_argument("--op", action="append", choices=("correntropy", "additive_expand", "line_enhance", "moments"),
                   help="only this op (repeatable; default all)")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON ('-': JSON to stdout only)")
    p.add_argument("--subset", choices=("full", "ci"), default="full",
                   help="'ci': every kernel and constexpr branch in fp32/bf16, fewer sizes (the CI test)")
    p.add_argument("--markdown", action="store_true", help="print the per-kernel summary as a Markdown table")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel compiles (default 2)")
    p.set_defaults(func=run)
