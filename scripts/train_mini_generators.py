"""Train the mini-benchmark's diffusion generators and write their weights into hrrkit.

    python scripts/train_mini_generators.py                 # both generators, shipped settings
    python scripts/train_mini_generators.py --only unet-ddim --steps 200 --out /tmp/gens

Writes ``<name>.safetensors`` and ``<name>.json`` (the training record: spec, settings, seed, loss
curve, versions, time, weights SHA-256) to ``hrrkit/datasets/weights/`` unless ``--out`` is given.
The recipe itself is :func:`hrrkit.datasets.recipe.train_generator`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from hrrkit.datasets.generators import GENERATORS, WEIGHTS_DIR
from hrrkit.datasets.recipe import TrainSettings, train_generator


def main(argv: list[str] | None = None) -> int:
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(GENERATORS), action="append", help="train only this generator")
    parser.add_argument("--out", default=str(WEIGHTS_DIR), help="output folder (default: the shipped weights)")
    for field in dataclasses.fields(TrainSettings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name))
    args = parser.parse_args(argv)
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)})
    for name in args.only or list(GENERATORS):
        record = train_generator(name, settings, out_dir=args.out)
        summary = {k: record[k] for k in ("generator", "parameters", "loss_first_50", "loss_last_50", "seconds")}
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
