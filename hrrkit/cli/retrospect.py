"""``hrrkit retrospect``: precompute diffusion reconstructions of a folder into a cache; benchmark.

hrrkit retrospect run IMAGES... --model PATH --kind latent --cache DIR [settings]
torchrun --nproc-per-node 4 -m hrrkit retrospect run ...     (each rank takes a shard)
hrrkit retrospect bench                                      (NFE and images/s, tiny models)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hrrkit.utils.device import resolve_device


def _build_retrospector(args: argparse.Namespace):
    from hrrkit.retrospect.registry import weights_backed_kinds

    kind = weights_backed_kinds()[args.kind]
    common = dict(
        dtype=args.dtype,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        micro_batch=args.micro_batch,
        channels_last=args.channels_last,
        compile=args.compile,
        config=args.config,
        allow_download=args.allow_download,
    )
    # the settings each kind's from_pretrained takes beyond the common ones
    # settings left out take each model's own default (DIRE's 20-step inversion for a pixel folder, the
    # 2-NFE round trip of hrrkit's shipped model, one-step for a latent model)
    chosen = {k: v for k, v in dict(mode=args.mode, timestep=args.timestep, steps=args.steps,
                                    strength=args.strength).items() if v is not None}
    specific = {
        "pixel_ddim": dict(clip_sample=args.clip_sample, seed=args.seed, **chosen),
        "latent": dict(original_config=args.original_config, conditioning=args.conditioning, seed=args.seed,
                       clip_sample=args.clip_sample, **chosen),
        "autoencoder": dict(original_config=args.original_config),
    }.get(kind.name, {})
    return kind.load_class().from_pretrained(args.model, **specific, **common)


def _device(name: str | None, rank: int) -> torch.device:
    device = resolve_device(name, where="hrrkit retrospect")
    if device.type == "cuda":
        if device.index is None:  # one GPU per rank under torchrun
            device = torch.device("cuda", rank % torch.cuda.device_count())
    return device


def _loader(reencode: str | None):
    """The image loader and its cache id; ``reencode`` (e.g. ``"jpeg:95"``) equalises formats."""
    from hrrkit.data.dataset import ReEncode
    from hrrkit.data.io import load_image, to_tensor
    from hrrkit.retrospect.cache import DEFAULT_LOADER_ID, default_image_loader

    spec = ReEncode.parse(reencode)
    if spec is None:
        return default_image_loader, DEFAULT_LOADER_ID

    def load(path: Path) -> torch.Tensor:
        return to_tensor(spec(load_image(path, mode="RGB")))

    return load, f"{DEFAULT_LOADER_ID}+ReEncode({spec.format},{spec.quality})"


def run(args: argparse.Namespace) -> int:
    import os

    import torch.distributed as dist

    from hrrkit.data.io import list_image_files
    from hrrkit.retrospect.cache import ReconstructionCache, cache_config, precompute
    from hrrkit.retrospect.loading import WeightsLoadError

    if args.kind is None:  # hrrkit's shipped model is a pixel UNet; a folder defaults to latent
        args.kind = "pixel" if str(args.model).startswith("hrrkit:") else "latent"
    world = int(os.environ.get("WORLD_SIZE", 1))
    started_group = False
    if world > 1 and dist.is_available() and not dist.is_initialized():
        # gloo is enough: ranks only exchange the run summary at the end
        dist.init_process_group("gloo")
        started_group = True
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    try:
        try:
            files = list_image_files(args.inputs)
        except FileNotFoundError as err:
            print(f"hrrkit retrospect: {err}", file=sys.stderr)
            return 2
        try:
            retro = _build_retrospector(args).to(_device(args.device, rank))
        except (WeightsLoadError, FileNotFoundError, ValueError, TypeError) as err:
            print(f"hrrkit retrospect: cannot build the {args.kind} retrospector: {err}", file=sys.stderr)
            return 2
        try:
            loader, loader_id = _loader(args.reencode)
        except ValueError as err:
            print(f"hrrkit retrospect: {err}", file=sys.stderr)
            return 2
        cache = ReconstructionCache(args.cache, cache_config(retro, loader_id), store_dtype=args.store_dtype)
        if rank == 0:
            cost = retro.cost()
            print(f"{retro!r}")
            print(f"cache: {cache.dir}  ({len(files)} images, NFE/image {cost.nfe} per tile)", flush=True)
        log = (lambda msg: print(f"[rank {rank}] {msg}", file=sys.stderr)) if args.verbose else None
        summary = precompute(
            retro,
            files,
            cache,
            batch_size=args.batch_size,
            loader=loader,
            progress=not args.no_progress,
            log=log,
        )
        if started_group:
            # every rank out of the summary's collectives before any tears the group down: a rank that
            # destroyed it while its peer was still receiving aborted now and then under load
            dist.barrier()
    finally:
        if started_group:
            dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(summary.as_dict()))
        print(f"cost: {summary.nfe_per_image:g} NFE/image, {summary.seconds_per_image:.4f} s/image computed "
              f"({summary.computed}), {summary.seconds_per_hit:.5f} s/cache hit ({summary.cached})")
        for path, reason in summary.failed:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        if args.report:
            Path(args.report).write_text(
                json.dumps({**summary.as_dict(), "failures": summary.failed, "cache": str(cache.dir)}, indent=2)
            )
    return 1 if (summary.failed and args.strict) else 0


def bench(args: argparse.Namespace) -> int:
    from hrrkit.retrospect.bench import benchmark, format_table

    if args.cost:  # the real retrospectors' seconds/image, NFE and FLOPs at 64/256/512 px
        from hrrkit.bench.cases.retrospect import SIZES, format_cost_table, time_retrospectors

        sizes_px = SIZES if args.sizes is None else tuple(int(s.partition("x")[0]) for s in args.sizes.split(","))
        cost_rows = time_retrospectors(sizes=sizes_px, repeats=args.repeats, device=args.device or "cpu")
        print(format_cost_table(cost_rows))
        if args.out:
            with open(args.out, "a") as fh:
                for cost_row in cost_rows:
                    fh.write(json.dumps(cost_row.as_dict()) + "\n")
        return 0
    args.sizes = args.sizes or "32x32,48x40"

    sizes = []
    for item in args.sizes.split(","):
        h, _, w = item.partition("x")
        sizes.append((int(h), int(w or h)))
    rows = benchmark(sizes=sizes, batch=args.batch, repeats=args.repeats, device=args.device)
    print(format_table(rows))
    if args.out:
        with open(args.out, "a") as fh:
            for row in rows:
                fh.write(json.dumps(row.as_dict()) + "\n")
    return 0


def _optional_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    from hrrkit.retrospect.registry import weights_backed_kinds

    parser = subparsers.add_parser(
        "retrospect", help="reconstruct images with a diffusion model into a resumable cache; benchmark NFE"
    )
    sub = parser.add_subparsers(dest="retrospect_command", metavar="ACTION", required=True)

    p = sub.add_parser("run", help="precompute reconstructions of image files/folders into a cache")
    p.add_argument("inputs", nargs="+", help="image files, folders (walked recursively) or globs")
    p.add_argument("--model", required=True,
                   help="local diffusers folder or .safetensors file, or hrrkit:real-photo-unet (shipped, --kind pixel)")
    p.add_argument("--kind", choices=tuple(weights_backed_kinds()), default=None,
                   help="pixel: DIRE DDIM with a UNet2DModel; latent: VAE + UNet2DConditionModel; "
                   "autoencoder: VAE only (default: pixel for hrrkit:<name>, else latent)")  # fmt: skip
    p.add_argument("--cache", required=True, help="cache root folder (created; entries go to <cache>/<config hash>/)")
    p.add_argument("--config", help="config for a single-file checkpoint (config.json, or a diffusers folder)")
    p.add_argument("--original-config", help="original LDM yaml for an original-format single-file checkpoint")
    p.add_argument("--allow-download", action="store_true", help="allow fetching configs/weights from the Hub")
    p.add_argument("--mode", choices=("one_step", "invert"),
                   help="one-step denoise (NFE 1) or DDIM round trip (default: latent one_step, pixel invert)")
    p.add_argument("--timestep", type=int, help="one_step: noise timestep (default: latent 200, pixel 100)")
    p.add_argument("--seed", type=int, default=0, help="one_step: noise seed")
    p.add_argument("--steps", type=int, help="DDIM grid size each way (pixel, latent invert; default 20, or the "
                                            "shipped model's 40)")
    p.add_argument("--strength", type=float, help="fraction of the DDIM grid walked (default 1.0, or the shipped "
                                                  "model's 0.025)")
    p.add_argument(
        "--clip-sample", type=_optional_bool, default=None, help="clip x0 in DDIM steps (default: scheduler's)"
    )
    p.add_argument("--conditioning", help="latent: .safetensors file with the fixed encoder_hidden_states")
    p.add_argument(
        "--reencode",
        help="re-encode every image the same way before reconstruction (jpeg:95, webp:90, png): "
        "removes the JPEG-vs-PNG format cue (see docs/retrospection.md)",
    )
    p.add_argument("--dtype", default="float32", help="compute dtype: float32, bfloat16, float16")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available; per-rank GPU under torchrun)")
    p.add_argument("--batch-size", type=int, default=8, help="images per call (same-size images only)")
    p.add_argument("--micro-batch", type=int, help="at most this many images/tiles per network call")
    p.add_argument("--tile-size", type=int, help="process images larger than this in overlapping tiles")
    p.add_argument("--tile-overlap", type=int, default=32, help="tile overlap in pixels")
    p.add_argument("--channels-last", action="store_true", help="channels-last networks (GPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--store-dtype", default="float16", help="dtype of cached tensors (float16, bfloat16, float32)")
    p.add_argument("--report", help="write the run summary with every skipped file to this JSON file")
    p.add_argument("--strict", action="store_true", help="exit 1 if any image was skipped")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="log every skipped or corrupt file as it happens")
    p.set_defaults(func=run)

    b = sub.add_parser("bench", help="NFE per image and images/s for each retrospector on tiny models")
    b.add_argument("--sizes", help="comma-separated HxW sizes (default 32x32,48x40; --cost: 64,256,512)")
    b.add_argument("--cost", action="store_true",
                   help="time the shipped model, blur and identity (s/image, NFE, FLOPs, cache hit) instead")
    b.add_argument("--batch", type=int, default=2)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--device", help="default: cuda if available")
    b.add_argument("--out", help="append JSON rows to this file (JSON Lines)")
    b.set_defaults(func=bench)
