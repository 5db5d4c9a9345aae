"""Cost per image of ``hrrkit data align`` and ``hrrkit zero-shot`` on CPU, fp32.

Autoencoders of the real architectures are built from their configs with random weights (nothing is
downloaded; time and FLOPs depend on the architecture and the image size, not on the weights):

* ``tiny``: hrrkit's test autoencoder (:func:`hrrkit.retrospect.tiny.tiny_vae`, 4 latent channels);
* ``sd-vae``: Stable Diffusion 1.x/2.x's ``AutoencoderKL`` (channels 128-256-512-512, 2 layers per
  block, 4 latent channels; SDXL's has the same shape);
* ``flux-vae``: FLUX.1's (the same body with 16 latent channels and no quant convolutions; SD3's
  is alike).

For each model and ``size x size`` photo, the FLOPs of one encode + decode (what ``hrrkit data align``
does per image and autoencoder, :func:`hrrkit.retrospect.aligned.reconstruct_uint8`) are counted with
``torch.utils.flop_counter`` on meta tensors (exact, instant). Where they are at most
``--time-max-gflops``, the round trip is also timed with ``torch.utils.benchmark`` (after a warm-up);
larger ones are **estimated** as FLOPs / the GFLOP/s that model reached at its largest timed size
(``seconds_kind`` says which). The zero-shot distance (LPIPS-style on Lite0 level 1) is timed at
every size. Seconds depend on the machine's load: run it on an idle machine.

    python benchmarks/aligned_cost.py [--sizes 128,256,512,1024] [--models tiny,sd-vae,flux-vae]
        [--threads 2] [--time-max-gflops 300] [--out benchmarks/results/cpu-2core-reference/aligned_cost.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

SD_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": (128, 256, 512, 512),
          "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 512,
          "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
          "scaling_factor": 0.18215}
FLUX_VAE = {**SD_VAE, "latent_channels": 16, "use_quant_conv": False, "use_post_quant_conv": False,
            "scaling_factor": 0.3611, "shift_factor": 0.1159}


def build(name: str, device: str = "cpu"):
    from diffusers import AutoencoderKL

    from hrrkit.retrospect.autoencoder import AutoencoderRetrospector
    from hrrkit.retrospect.tiny import tiny_vae

    with torch.device(device):
        vae = tiny_vae() if name == "tiny" else AutoencoderKL(**(SD_VAE if name == "sd-vae" else FLUX_VAE))
    return AutoencoderRetrospector(vae.eval(), dtype="float32", tile_size=None)


def round_trip_gflops(name: str, size: int) -> float:
    """GFLOPs of one encode + decode of a ``size x size`` image, counted on meta tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    codec = build(name, "meta").codec
    with FlopCounterMode(display=False) as counter:
        codec.decode(codec.encode(torch.empty(1, 3, size, size, device="meta")))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256,512,1024")
    parser.add_argument("--models", default="tiny,sd-vae,flux-vae")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time-max-gflops", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu-2core-reference/aligned_cost.json"))
    args = parser.parse_args()
    from torch.utils.benchmark import Timer

    from hrrkit.models.zero_shot import Lite0PerceptualDistance
    from hrrkit.retrospect.aligned import reconstruct_uint8, uint8_to_batch
    from hrrkit.utils.atomic import atomic_write_json

    torch.set_num_threads(args.threads)
    distance = Lite0PerceptualDistance(1).eval()
    rows = []
    for name in args.models.split(","):
        retrospector = build(name)
        params = sum(p.numel() for p in retrospector.vae.parameters())
        rate = None  # GFLOP/s at the largest timed size
        for size in sorted(map(int, args.sizes.split(","))):
            gflops = round_trip_gflops(name, size)
            photo = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
            row = {"model": name, "parameters": params, "size": size, "gflops": gflops}
            if gflops <= args.time_max_gflops:
                timer = Timer("reconstruct_uint8(r, photo)", globals={"reconstruct_uint8": reconstruct_uint8,
                                                                     "r": retrospector, "photo": photo},
                              num_threads=args.threads)
                seconds = timer.timeit(1 if gflops > 20 else 10).median
                rate = gflops / seconds
                row.update(seconds=seconds, seconds_kind="measured", cpu_gflops_per_s=rate)
            elif rate is not None:
                row.update(seconds=gflops / rate, seconds_kind="estimated", cpu_gflops_per_s=rate)
            x = uint8_to_batch(photo)
            dist_timer = Timer("distance(x, y)", globals={"distance": distance, "x": x, "y": x.flip(-1)},
                               num_threads=args.threads)
            row["lpips_lite0_seconds"] = dist_timer.timeit(3).median
            rows.append(row)
            print(json.dumps(row), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    atomic_write_json(args.out, {"device": platform.processor() or platform.machine(), "threads": args.threads,
                                 "torch": torch.__version__, "dtype": "float32", "commit": commit, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
