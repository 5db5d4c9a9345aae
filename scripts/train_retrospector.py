"""Train hrrkit's shipped diffusion retrospector on real photographs and write its weights into hrrkit.

    python scripts/train_retrospector.py                      # the shipped settings (one thread)
    python scripts/train_retrospector.py --steps 200 --out /tmp/retro

Writes ``real-photo-unet.safetensors`` and ``real-photo-unet.json`` (the training record: model
spec, settings, seed, the photographs with their SHA-256, loss curve, time, versions, the weights'
SHA-256 and the losses, block weight norms and fixed-image reconstruction of a seeded reference
short run) to ``hrrkit/retrospect/weights/`` unless ``--out``
is given. The recipe is :func:`hrrkit.retrospect.training.train_retrospector`; the crops come only
from the photographs :mod:`hrrkit.retrospect.photos` gives the role ``train``.

The shipped weights were trained with ``OMP_NUM_THREADS=1 nice -n 10 python scripts/train_retrospector.py``
(one thread: on a shared 2-core machine a second thread made each step 5-20x slower). A rerun with the
same torch build, CPU and thread count reproduces them bit for bit, elsewhere up to float rounding.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from hrrkit.retrospect.shipped import SHIPPED_RETROSPECTORS, WEIGHTS_DIR
from hrrkit.retrospect.training import RetrospectorTrainSettings, train_retrospector


def main(argv: list[str] | None = None) -> int:
    defaults = RetrospectorTrainSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", choices=sorted(SHIPPED_RETROSPECTORS), default="real-photo-unet")
    parser.add_argument("--out", default=str(WEIGHTS_DIR), help="output folder (default: the shipped weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    for field in dataclasses.fields(RetrospectorTrainSettings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = RetrospectorTrainSettings(**{f.name: getattr(args, f.name)
                                            for f in dataclasses.fields(RetrospectorTrainSettings)})
    record = train_retrospector(args.name, settings, out_dir=args.out)
    print(json.dumps({k: record[k] for k in ("retrospector", "parameters", "loss_first_50", "loss_last_50",
                                             "seconds", "weights_sha256")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
