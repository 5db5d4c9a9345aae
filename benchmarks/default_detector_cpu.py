"""CPU throughput and peak memory of ``hrrkit detect`` with the shipped default detector (issue 25).

Copies ``--count`` photographs of mixed sizes from the photo pool (``hrrkit data pools`` fetches it) into a
folder, then runs ``hrrkit detect FOLDER --profile-json`` (default model, default batch and pixel budget)
in a fresh process under ``/usr/bin/time -v``-style accounting (``resource.getrusage`` of the child), and
writes images/s overall and per stage plus the peak RSS as JSON and a Markdown line.

    python benchmarks/default_detector_cpu.py [--count 100] [--out benchmarks/results/cpu-2core-reference/default_detector_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "cpu-2core-reference" / "default_detector_cpu.json")
    args = parser.parse_args(argv)
    from hrrkit.datasets.photo_pool import PhotoPool

    records = sorted(PhotoPool(progress=False).records(), key=lambda r: r.sha256)
    # mixed sizes: every k-th record of the pool ordered by hash (all packages, 128 to 1920 px)
    step = max(1, len(records) // args.count)
    picked = records[::step][: args.count]
    with tempfile.TemporaryDirectory(prefix="hrrkit-bench-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, r in enumerate(picked):
            shutil.copy(r.path, folder / f"{i:03d}{Path(r.path).suffix}")
        profile = Path(tmp) / "profile.json"
        command = [sys.executable, "-c", "import sys; from hrrkit.cli import main; sys.exit(main(sys.argv[1:]))",
                   "detect", str(folder), "--no-progress", "--out",
                   str(Path(tmp) / "scores.csv"), "--profile-json", str(profile)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        stages = json.loads(profile.read_text())
    sides = sorted(min(r.width, r.height) for r in picked)
    result = {
        "images": len(picked), "short_side_px": {"min": sides[0], "median": sides[len(sides) // 2], "max": sides[-1]},
        "wall_s": round(wall, 2), "images_per_s": round(len(picked) / wall, 2),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1), "cpu_s": round((after.ru_utime + after.ru_stime)
                                                                     - (before.ru_utime + before.ru_stime), 1),
        "profile": stages, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(), "command": "hrrkit " + " ".join(command[3:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{result['images']} photos (short side {sides[0]}-{sides[-1]} px): {result['images_per_s']} images/s "
          f"({wall:.1f} s wall, {result['cpu_s']} CPU-s), peak RSS {result['peak_rss_mb']} MB, "
          f"load average {result['load_average'][0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
