"""Peak resident memory of ``hrrkit detect`` on CPU (issue 17): mixed photo sizes up to 4k, a detector
that reads whole images (``input.eval_policy: native``, the demo's setting) and one that reads the
default centre crop. Each configuration runs in a fresh process and reports ``ru_maxrss``.

    python benchmarks/detect_memory.py [--out benchmarks/results/detect_memory.json] [--threads 2]

The images are synthetic (smooth noise) and the detectors untrained (blur retrospector): memory depends
on sizes and the architecture, not on the weights. Run on an otherwise idle machine for stable numbers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = [(4000, 3000), (3024, 4032), (3840, 2160), (1920, 1080), (1200, 1600), (1024, 1024), (800, 600),
         (640, 480), (512, 512), (5000, 300), (300, 5000), (256, 256), (1, 1)]  # (width, height)

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(int(sys.argv[4]))
from hrrkit.eval.predict import detect_files
from hrrkit.models import HRRDetector, preset_config
policy, folder, batch = sys.argv[1], sys.argv[2], sys.argv[3]
# the demo's weight-free blur retrospector: the shipped diffusion one adds its UNet's activations
config = preset_config("hrr").replace(**{"input.eval_policy": policy, "retrospector.kind": "blur",
                                         "retrospector.path": None})
detector = HRRDetector(config).eval()
kwargs = {} if batch == "default" else {"batch_size": int(batch)}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = detect_files(detector, [folder], **kwargs)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"policy": policy, "batch": batch, "files": len(result.rows), "peak_rss_mb": peak / 1024,
                  "rss_before_mb": base / 1024}))
"""


def write_images(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(SIZES):
        small = rng.integers(0, 256, (max(1, h // 16), max(1, w // 16), 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR).save(folder / f"{i:02d}_{w}x{h}.jpg", quality=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--policies", default="native,center_crop", help="comma-separated eval policies")
    parser.add_argument("--batches", default="default,1", help="comma-separated: default and/or image counts")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_images(folder)
        for policy in args.policies.split(","):
            for batch in args.batches.split(","):
                res = subprocess.run([sys.executable, "-c", CHILD, policy, str(folder), batch, str(args.threads)],
                                     capture_output=True, text=True, check=True)
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{policy:>12}  batch={batch:>7}  files={row['files']}  peak RSS {row['peak_rss_mb']:.0f} MB")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"sizes_wh": SIZES, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
