"""Tiny synthetic real/generated data sets in every supported layout, written on the fly.

"Real" images are smooth random fields (low-resolution noise upsampled bicubically); "generated"
images are the same kind of field plus a faint periodic artefact (a period-2 checkerboard, like the
up-sampling traces of many generators). A detector that works must learn to separate them; one
that is broken stays at chance. Sizes vary and are odd on purpose.

Used by the end-to-end tests of ``hrrkit train/eval/detect`` and by the example recipes' tests.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["LAYOUT_NAMES", "TINY_DETECTOR", "synthetic_image", "tiny_run_config", "write_synthetic_layout"]

LAYOUT_NAMES: tuple[str, ...] = ("forensynths", "genimage", "diffusionforensics", "flat", "csv")

# a detector small enough to train for a few epochs on a CPU in seconds: 24-px crops, a 2-stage
# compact CNN of width 8, the blur retrospector (no weights), all of HRR's other parts on
TINY_DETECTOR: dict = {
    "preset": "hrr",
    "input": {"policy": "random_crop", "eval_policy": "center_crop", "crop_size": 24},
    "backbone": {"options": {"width": 8, "depth": 2}},
    # pinned: the default retrospector is the shipped diffusion model since issue 13
    "retrospector": {"kind": "blur", "path": None},
}


def synthetic_image(rng: np.random.Generator, fake: bool, *, min_side: int = 16, max_side: int = 40,
                    artefact: float = 14.0) -> Image.Image:
    """One RGB image of random (often odd) size in ``[min_side, max_side]``; ``fake`` adds a
    checkerboard of ``artefact`` grey levels (of 255) on top of the smooth field."""
    h, w = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    coarse = rng.uniform(40, 215, size=(max(2, h // 6), max(2, w // 6), 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    if fake:
        yy, xx = np.mgrid[0:h, 0:w]
        field = field + artefact * (((yy + xx) % 2) * 2.0 - 1.0)[:, :, None]
    return Image.fromarray(np.clip(field, 0, 255).round().astype(np.uint8), "RGB")


def _save(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def write_synthetic_layout(
    root: str | Path,
    layout: str,
    *,
    per_class: int = 12,
    generators: tuple[str, ...] = ("gan_a", "diff_b"),
    seed: int = 0,
    min_side: int = 16,
    max_side: int = 40,
) -> Path:
    """Write a tiny data set in ``layout`` under ``root``; returns what to pass as ``data.root``
    (the folder, or the manifest file for ``csv``).

    Each split gets ``per_class`` real and ``per_class`` fake images per generator (the validation
    and test splits half as many, at least 4). Splits per layout, as the real data sets have them:

    * ``forensynths``: ``{train,val}/<class>/{0_real,1_fake}`` (one generator's classes ``cat`` and
      ``car``, as ProGAN's training set) and ``test/<generator>/<class>/{0_real,1_fake}``;
    * ``genimage``: ``<generator>/imagenet_ai_<generator>/{train,val}/{nature,ai}``, with the subset
      level GenImage ships (no test split: val is the test set);
    * ``diffusionforensics``: ``{train,val,test}/<source>/{real,<generator>...}``, source ``lsun``;
    * ``flat``: ``{train,val,test}/{real,fake/<generator>}``;
    * ``csv``: ``manifest.csv`` with ``path,label,generator,split`` over ``images/``.
    """
    if layout not in LAYOUT_NAMES:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUT_NAMES}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    counter = iter(range(10**9))

    def image(fake: bool) -> Image.Image:
        return synthetic_image(rng, fake, min_side=min_side, max_side=max_side)

    def n_for(split: str) -> int:
        return per_class if split == "train" else max(4, per_class // 2)

    def name() -> str:
        return f"{next(counter):05d}.png"

    rows: list[tuple[str, int, str, str]] = []
    if layout == "forensynths":
        # as CNNDetection ships it: train/val hold one generator's classes, test one folder per generator
        classes = ("cat", "car")
        for split in ("train", "val"):
            for cls in classes:
                for _ in range(n_for(split) * len(generators) // len(classes)):
                    _save(image(False), root / split / cls / "0_real" / name())
                    _save(image(True), root / split / cls / "1_fake" / name())
        for gen in generators:
            for cls in classes:
                for _ in range(max(2, n_for("test") // len(classes))):
                    _save(image(False), root / "test" / gen / cls / "0_real" / name())
                    _save(image(True), root / "test" / gen / cls / "1_fake" / name())
        return root
    if layout == "genimage":
        for gen in generators:
            subset = root / gen / f"imagenet_ai_{gen}"  # as stable_diffusion_v_1_4/imagenet_ai_0419_sdv4
            for split in ("train", "val"):
                for _ in range(n_for(split)):
                    _save(image(False), subset / split / "nature" / name())
                    _save(image(True), subset / split / "ai" / name())
        return root
    if layout == "diffusionforensics":
        for split in ("train", "val", "test"):
            for _ in range(n_for(split) * len(generators)):
                _save(image(False), root / split / "lsun" / "real" / name())
            for gen in generators:
                for _ in range(n_for(split)):
                    _save(image(True), root / split / "lsun" / gen / name())
        return root
    if layout == "flat":
        for split in ("train", "val", "test"):
            for _ in range(n_for(split) * len(generators)):
                _save(image(False), root / split / "real" / name())
            for gen in generators:
                for _ in range(n_for(split)):
                    _save(image(True), root / split / "fake" / gen / name())
        return root
    # csv manifest
    for split in ("train", "val", "test"):
        for gen in generators:
            for _ in range(n_for(split)):
                rel = f"images/{name()}"
                _save(image(False), root / rel)
                rows.append((rel, 0, gen, split))
                rel = f"images/{name()}"
                _save(image(True), root / rel)
                rows.append((rel, 1, gen, split))
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "generator", "split"])
        writer.writerows(rows)
    return manifest


def tiny_run_config(data_root: str | Path, output_dir: str | Path, *, layout: str = "auto",
                    epochs: int = 2, **sections: dict) -> dict:
    """A run config (the mapping ``hrrkit train`` reads) for :data:`TINY_DETECTOR` on ``data_root``;
    each keyword (``detector``, ``data``, ``train``) is merged one level deep into its section."""
    import copy

    config = {
        "detector": copy.deepcopy(TINY_DETECTOR),
        "data": {"root": str(data_root), "layout": layout},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 3e-3, "log_every": 1, "seed": 0},
        "output_dir": str(output_dir),
        "device": "cpu",
    }
    if layout == "genimage" or (layout == "auto" and _looks_like_genimage(data_root)):
        # GenImage ships train and val only: validate on a held-out tenth of train, test on val
        config["data"].update({"val_split": None, "val_fraction": 0.2, "test_split": "val"})
    for name, values in sections.items():
        if name not in config or not isinstance(values, dict):
            raise ValueError(f"tiny_run_config: unknown section {name!r}")
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(config[name].get(key), dict):
                config[name][key] = {**config[name][key], **value}
            else:
                config[name][key] = value
    return config


def _looks_like_genimage(root: str | Path) -> bool:
    from hrrkit.data.layouts import LayoutError, detect_layout

    try:
        return detect_layout(root) == "genimage"
    except LayoutError:
        return False
