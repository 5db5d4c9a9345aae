"""Peak resident memory and speed of ``hrrkit detect`` on CPU, per stage, for every shipped detector.

For every registered preset (``hrrkit.models.presets.list_presets()``), as its config defines it
(``preset``) and reading whole images (``native``: ``input.eval_policy: native``, the hardest case
for memory: a 4000x3000 photo is scored at full size; not run for ViT backbones, whose attention over
~16k tokens of a whole 4k view takes minutes per view on CPU), an untrained detector folder is
written and ``hrrkit detect FOLDER --model DIR --profile-json`` runs on it in a fresh process at the
command's default settings, on two folders:

* ``photos``: 13 JPEGs of mixed sizes up to 5000 px (4000x3000, 3024x4032, 3840x2160, ..., 5000x300,
  1x1);
* ``small``: ``--small-count`` JPEGs of 256x256 px.

Each run reports the process's peak RSS (``ru_maxrss``) and, per stage (decode, rescale,
retrospection, backbone, head, evidence), seconds, images/s and the peak RSS reached while that stage
ran (:mod:`hrrkit.utils.profile`).

    python benchmarks/detect_memory.py [--out benchmarks/results/detect-memory-cpu/detect_memory.json]
        [--threads 1] [--presets hrr,dire] [--variants preset,native] [--sets photos,small] [--maps]

The images are synthetic (smooth noise) and the detectors untrained: memory and speed depend on sizes
and the architecture, not on the weights (the shipped diffusion retrospector and the ImageNet backbone
are the real ones). Run on an otherwise idle machine for stable numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = [(4000, 3000), (3024, 4032), (3840, 2160), (1920, 1080), (1200, 1600), (1024, 1024), (800, 600),
         (640, 480), (512, 512), (5000, 300), (300, 5000), (256, 256), (1, 1)]  # (width, height)

#: the bound ``hrrkit detect`` must keep at its default settings (design brief §7, issue 27)
BOUND_MB = 1024

BUILD = r"""
import sys
from hrrkit.models import HRRDetector, preset_config
from hrrkit.models.checkpoint import save_detector
name, variant, folder = sys.argv[1:4]
config = preset_config(name)
if variant == "native":
    config = config.replace(**{"input.eval_policy": "native"})
save_detector(HRRDetector(config).eval(), folder)
"""


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        small = rng.integers(0, 256, (max(1, h // 16), max(1, w // 16), 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR).save(folder / f"{i:03d}_{w}x{h}.jpg", quality=90)


def run_one(name: str, variant: str, images: Path, work: Path, threads: int, maps: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    model = work / f"{name}-{variant}"
    if not model.exists():
        built = subprocess.run([sys.executable, "-c", BUILD, name, variant, str(model)], env=env,
                               capture_output=True, text=True)
        if built.returncode != 0:  # a preset that cannot be built here (e.g. missing weights): say so, go on
            return {"preset": name, "variant": variant, "images_set": images.name,
                    "error": built.stderr.strip().splitlines()[-1] if built.stderr.strip() else "build failed"}
    profile = work / "profile.json"
    command = [sys.executable, "-m", "hrrkit", "detect", str(images), "--model", str(model), "--out",
               str(work / "scores.csv"), "--profile-json", str(profile), "--no-progress"]
    if maps:
        command += ["--maps", str(work / "maps")]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{name} ({variant}) on {images.name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    result = json.loads(profile.read_text())
    result.update(preset=name, variant=variant, images_set=images.name, wall_s=time.perf_counter() - started,
                  within_bound=result["peak_rss_mb"] <= BOUND_MB)
    return result


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent)
    return done.stdout.strip() if done.returncode == 0 else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run (1 on a shared machine)")
    parser.add_argument("--presets", help="comma-separated presets (default: every registered preset)")
    parser.add_argument("--variants", default="preset,native", help="preset (its config) and/or native (whole "
                        "images)")
    parser.add_argument("--sets", default="photos,small", help="photos (13 sizes up to 5000 px) and/or small")
    parser.add_argument("--small-count", type=int, default=64, help="256-px images in the small set")
    parser.add_argument("--maps", action="store_true", help="also write evidence maps (--maps)")
    args = parser.parse_args()

    from hrrkit.models.presets import list_presets, preset_config

    presets = args.presets.split(",") if args.presets else list(list_presets())
    vit = {name for name in presets if preset_config(name).backbone.name.startswith("dinov2")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hrrkit-detect-memory-") as tmp:
        work = Path(tmp)
        folders = {"photos": work / "photos", "small": work / "small"}
        write_images(folders["photos"], SIZES)
        write_images(folders["small"], [(256, 256)] * args.small_count)
        for name in presets:
            for variant in args.variants.split(","):
                if variant == "native" and name in vit:
                    continue
                for set_name in args.sets.split(","):
                    row = run_one(name, variant, folders[set_name], work, args.threads, args.maps)
                    rows.append(row)
                    if "error" in row:
                        print(f"{name:>21} {variant:>6} {set_name:>6}: not measured: {row['error']}", flush=True)
                        continue
                    stages = {s["stage"]: s for s in row["stages"]}
                    worst = max(row["stages"], key=lambda s: s["peak_rss_mb"] or 0)
                    per_stage = "  ".join(f"{s}={stages[s]['images_per_s']:.1f}/s" for s in
                                          ("retrospection", "backbone") if s in stages)
                    print(f"{name:>21} {variant:>6} {set_name:>6}: {row['images']:>3} images, peak RSS "
                          f"{row['peak_rss_mb']:6.0f} MB (highest in {worst['stage']}), {row['images_per_s']:.2f} "
                          f"images/s {per_stage} {'ok' if row['within_bound'] else 'OVER ' + str(BOUND_MB)}",
                          flush=True)
    if args.out:
        import torch

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        payload = {"bound_mb": BOUND_MB, "photo_sizes_wh": SIZES, "small_count": args.small_count,
                   "threads": args.threads, "machine": f"{platform.machine()} {_cpu_name()}".strip(),
                   "cpus": os.cpu_count(), "torch": torch.__version__, "commit": _commit(), "rows": rows}
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(r.get("within_bound", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
