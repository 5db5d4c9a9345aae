"""``hrrkit env``: versions, device, Triton usability and the op dispatch table."""

from __future__ import annotations

import argparse
import json
import platform

import torch


def collect(device: str) -> dict:
    from hrrkit.models.checkpoint import environment_versions
    from hrrkit.ops import op_table
    from hrrkit.ops._dispatch import interpreter_enabled, triton_import_error

    versions = environment_versions()
    return {
        "hrrkit": versions["hrrkit"],
        "python": versions["python"],
        "platform": platform.platform(),
        "torch": versions["torch"],
        "triton": versions["triton"],
        "diffusers": versions["diffusers"],
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "triton_usable": triton_import_error() is None,
        "triton_problem": triton_import_error(),
        "triton_interpret": interpreter_enabled(),
        "device": device,
        "ops": op_table(device),
    }


def run(args: argparse.Namespace) -> int:
    from hrrkit.utils.device import resolve_device

    device = str(resolve_device(args.device, where="hrrkit env"))
    info = collect(device)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("hrrkit", "python", "platform", "torch", "triton", "diffusers", "cuda_available", "triton_usable"):
        print(f"{key:>15}: {info[key]}")
    if info["cuda_devices"]:
        print(f"{'cuda devices':>15}: {', '.join(info['cuda_devices'])}")
    if info["triton_problem"]:
        print(f"{'triton problem':>15}: {info['triton_problem']}")
    print(f"{'TRITON_INTERPRET':>15}: {info['triton_interpret']}")
    print(f"\nops on {device} (impl='auto'):")
    width = max([len(r["op"]) for r in info["ops"]] + [2])
    for r in info["ops"]:
        print(f"  {r['op']:<{width}}  {r['auto']:<9}  {r['why'] or r['summary']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("env", help="print versions, devices, Triton usability and the op table")
    p.add_argument("--device", choices=("cpu", "cuda"), help="device for the op table (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
