"""Aligned training data: real photos and their autoencoder reconstructions, named alike
(``hrrkit data align REAL_DIR --vae PATH --out DIR``), and the pair keys that let training give both
members of a pair the same crop and augmentation.

The output is hrrkit's ``flat`` layout with split folders, so every recipe reads it as it is::

    OUT/<split>/real/<relative path>.png               the photo, cropped to a multiple of 8, lossless
    OUT/<split>/fake/<autoencoder>/<relative path>.png its reconstruction by <autoencoder>
    OUT/aligned.json                                    settings, per-image sizes, JPEG settings, seconds

``<split>`` is ``train``, ``val`` or ``test``, chosen from a hash of the photo's relative path, so a
photo and all its reconstructions always share one split, and adding photos later never moves old
ones. The reconstruction is made by :mod:`hrrkit.retrospect.aligned` (crop, round trip, 8-bit).

Every file is written atomically (:mod:`hrrkit.utils.atomic`): a killed run leaves complete files
or none, and a rerun skips every output that exists. ``jpeg_match`` compresses each
reconstruction with the JPEG quality and chroma subsampling estimated for its photo
(:mod:`hrrkit.data.jpeg`) before it is stored, so real and reconstruction share their compression.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hrrkit.data.io import ImageLoadError, list_image_files, load_image
from hrrkit.data.jpeg import jpeg_round_trip, jpeg_settings
from hrrkit.data.layouts import Sample
from hrrkit.utils.atomic import atomic_write_json, atomic_write_with

__all__ = ["ALIGNED_MANIFEST", "AlignSummary", "build_aligned_dataset", "pair_keys", "split_of"]

ALIGNED_MANIFEST = "aligned.json"
MANIFEST_VERSION = 1
# the manifest is rewritten at least this often (seconds) while a long job runs, so a killed run
# keeps the cost records of what it finished
_MANIFEST_EVERY_S = 60.0


def split_of(relative: str, val_fraction: float, test_fraction: float) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a photo's relative path: a uniform number from the
    SHA-256 of the path, below ``test_fraction`` → test, below ``test + val`` → val."""
    u = int.from_bytes(hashlib.sha256(relative.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


@dataclass
class AlignSummary:
    """What :func:`build_aligned_dataset` did.

    Attributes:
        photos: photos found under the real folder.
        written: files written this run (reals and reconstructions).
        skipped_existing: photos whose outputs all existed (resume).
        failed: ``(path, reason)`` of photos that could not be read or are too small.
        seconds_per_image: mean seconds of one reconstruction (encode, decode, JPEG matching) per
            autoencoder over the images reconstructed this run (absent: none reconstructed).
        manifest: the manifest written.
    """

    photos: int = 0
    written: int = 0
    skipped_existing: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds_per_image: dict[str, float] = field(default_factory=dict)
    manifest: Path | None = None


def _relative_stems(real_dir: Path, files: Sequence[Path]) -> list[str]:
    """``a/b/photo`` for ``REAL/a/b/photo.jpg``; two files mapping to one name raise ValueError."""
    stems = [f.relative_to(real_dir).with_suffix("").as_posix() for f in files]
    seen: dict[str, Path] = {}
    clashes = []
    for stem, f in zip(stems, files):
        if stem in seen:
            clashes.append(f"{seen[stem].name} and {f.name} in {f.parent}")
        seen[stem] = f
    if clashes:
        raise ValueError(f"{real_dir}: photos that differ only in their extension would share one output name: "
                         f"{'; '.join(clashes[:5])}; rename or move one of each")
    return stems


def _save_png(path: Path, array: np.ndarray) -> None:
    atomic_write_with(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def _settings(autoencoders: Mapping[str, Any], jpeg_match: bool, multiple: int) -> dict[str, Any]:
    return {"jpeg_match": jpeg_match, "crop_multiple": multiple,
            "autoencoders": {name: r.config_dict() for name, r in autoencoders.items()}}


def _check_resumable(previous: dict[str, Any], settings: dict[str, Any], out: Path) -> None:
    """A rerun may add autoencoders, never change what an existing one's files mean."""
    old = previous.get("settings", {})
    for key in ("jpeg_match", "crop_multiple"):
        if key in old and old[key] != settings[key]:
            raise ValueError(f"{out} was built with {key}={old[key]!r}, this run asks for {settings[key]!r}; "
                             "use another --out (or delete the folder) to rebuild")
    for name, config in settings["autoencoders"].items():
        before = old.get("autoencoders", {}).get(name)
        if before is not None and before != config:
            raise ValueError(f"{out}: the autoencoder named {name!r} has other weights or settings than the one "
                             "that wrote its reconstructions; name it apart with --vae NEW_NAME=PATH")


def build_aligned_dataset(
    real_dir: str | os.PathLike,
    autoencoders: Mapping[str, Any],
    out: str | os.PathLike,
    *,
    jpeg_match: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_pixels: int | None | Any = ...,
    progress: bool = True,
) -> AlignSummary:
    """Write the aligned data set of the photos under ``real_dir`` into ``out`` (module docstring).

    Args:
        real_dir: a folder of real photos (searched recursively; any format hrrkit loads).
        autoencoders: ``{name: AutoencoderRetrospector}``
            (:func:`hrrkit.retrospect.aligned.load_autoencoders`); ``name`` is the generator folder.
        out: the output folder (created; an existing one is resumed).
        jpeg_match: JPEG-compress each reconstruction at its photo's estimated quality and chroma
            subsampling (JPEG photos only; others are stored as reconstructed).
        val_fraction, test_fraction: shares of photos in the val and test splits.
        max_pixels: the loader's pixel limit (default: hrrkit's, 100 MP).
        progress: show a progress bar over the photos.

    Raises:
        FileNotFoundError: ``real_dir`` does not exist or holds no images.
        ValueError: bad fractions, photos whose names clash, or ``out`` built with other settings.
    """
    from tqdm.auto import tqdm

    from hrrkit.retrospect import aligned as round_trip  # diffusers loads only when data are built

    real_dir, out = Path(real_dir), Path(out)
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: each >= 0, sum < 1")
    if not real_dir.is_dir():
        raise FileNotFoundError(f"{real_dir}: no such folder of real photos")
    files = list_image_files(real_dir)
    if not files:
        raise FileNotFoundError(f"{real_dir}: no image files found (.jpg, .png, .webp, ...)")
    stems = _relative_stems(real_dir, files)
    multiple = round_trip.crop_multiple(list(autoencoders.values()))
    settings = _settings(autoencoders, jpeg_match, multiple)
    manifest_path = out / ALIGNED_MANIFEST
    previous: dict[str, Any] = {}
    if manifest_path.is_file():
        import json

        previous = json.loads(manifest_path.read_text())
        _check_resumable(previous, settings, out)
        settings["autoencoders"] = {**previous.get("settings", {}).get("autoencoders", {}), **settings["autoencoders"]}
    records: dict[str, Any] = dict(previous.get("images", {}))
    summary = AlignSummary(photos=len(files), manifest=manifest_path)
    costs: dict[str, list[float]] = {name: [] for name in autoencoders}
    load_options = {} if max_pixels is ... else {"max_pixels": max_pixels}

    def write_manifest() -> None:
        mean = {name: float(np.mean(v)) for name, v in costs.items() if v}
        summary.seconds_per_image = mean
        all_seconds: dict[str, list[float]] = {}
        for rec in records.values():
            for name, s in rec.get("seconds", {}).items():
                all_seconds.setdefault(name, []).append(s)
        atomic_write_json(manifest_path, {
            "version": MANIFEST_VERSION, "real_dir": real_dir.resolve().as_posix(), "settings": settings,
            "splits": {"val_fraction": val_fraction, "test_fraction": test_fraction, "rule": "sha256 of the relative path"},
            "summary": {"photos": len(records), "failed": [{"path": p, "reason": r} for p, r in summary.failed],
                        "seconds_per_image": {n: float(np.mean(v)) for n, v in sorted(all_seconds.items())},
                        "seconds_per_megapixel": _per_megapixel(records)},
            "images": dict(sorted(records.items())),
        })

    out.mkdir(parents=True, exist_ok=True)
    last_write = time.monotonic()
    bar = tqdm(list(zip(files, stems)), desc="align", unit="photo", disable=not progress)
    try:  # the manifest is written however the loop ends (a killed run keeps its records)
        for file, stem in bar:
            split = split_of(stem, val_fraction, test_fraction)
            real_out = out / split / "real" / f"{stem}.png"
            fake_outs = {name: out / split / "fake" / name / f"{stem}.png" for name in autoencoders}
            todo = [name for name, p in fake_outs.items() if not p.is_file()]
            if real_out.is_file() and not todo:
                summary.skipped_existing += 1
                continue
            try:
                photo = np.asarray(load_image(file, **load_options))
                array = round_trip.crop_to_multiple(photo, multiple)
            except (ImageLoadError, ValueError) as exc:
                summary.failed.append((file.as_posix(), str(exc)))
                continue
            jpeg, jpeg_error = None, None
            if jpeg_match:
                try:
                    jpeg = jpeg_settings(file)
                except (OSError, ValueError) as exc:  # odd tables (12-bit, CMYK): stored unmatched, said why
                    jpeg_error = f"JPEG settings not estimated: {exc}"
            record = records.setdefault(stem, {})
            record.update({"source": file.relative_to(real_dir).as_posix(), "split": split,
                           "original_size": [int(photo.shape[0]), int(photo.shape[1])],
                           "size": [int(array.shape[0]), int(array.shape[1])],
                           "jpeg": jpeg.to_dict() if jpeg is not None else None})
            if jpeg_error:
                record["note"] = jpeg_error
            if not real_out.is_file():
                _save_png(real_out, np.ascontiguousarray(array))
                summary.written += 1
            for name in todo:
                started = time.perf_counter()
                recon = round_trip.reconstruct_uint8(autoencoders[name], array)
                if jpeg is not None:
                    recon = jpeg_round_trip(recon, jpeg)
                seconds = time.perf_counter() - started
                _save_png(fake_outs[name], recon)
                summary.written += 1
                costs[name].append(seconds)
                record.setdefault("seconds", {})[name] = round(seconds, 4)
            bar.set_postfix({name: f"{np.mean(v):.2f}s" for name, v in costs.items() if v})
            if time.monotonic() - last_write > _MANIFEST_EVERY_S:
                write_manifest()
                last_write = time.monotonic()
    finally:
        write_manifest()
    return summary


def _per_megapixel(records: Mapping[str, Any]) -> dict[str, float]:
    """Seconds per megapixel per autoencoder: total seconds over total reconstructed pixels."""
    seconds: dict[str, float] = {}
    pixels: dict[str, float] = {}
    for rec in records.values():
        h, w = rec.get("size", (0, 0))
        for name, s in rec.get("seconds", {}).items():
            seconds[name] = seconds.get(name, 0.0) + s
            pixels[name] = pixels.get(name, 0.0) + h * w / 1e6
    return {name: seconds[name] / pixels[name] for name in sorted(seconds) if pixels[name] > 0}


# --------------------------------------------------------------------------------------------------
# pairs for training
# --------------------------------------------------------------------------------------------------


def pair_keys(samples: Sequence[Sample]) -> list[str]:
    """One key per sample; a real photo and its reconstructions share it.

    In the flat layout (what :func:`build_aligned_dataset` writes) the key is the split and the
    path below ``real/`` or below ``fake/<generator>/``, without the extension:
    ``train/real/a/x.png`` and ``train/fake/sd-vae/a/x.png`` both give ``train:a/x``. A sample
    outside a ``real``/``fake`` folder keeps its own path as key (a pair of one).
    """
    keys = []
    for s in samples:
        parts = s.path.parts
        label_folder = "fake" if s.label == 1 else "real"
        # the label folder right below the split folder (flat: ROOT/<split>/real|fake), else the last one
        marks = [i for i, p in enumerate(parts[:-1]) if p == label_folder
                 and (s.split is None or (i > 0 and parts[i - 1] == s.split))]
        if not marks:
            keys.append(s.path.as_posix())
            continue
        rel = list(parts[marks[-1] + 1:])
        if s.label == 1 and len(rel) > 1 and rel[0] == s.generator:
            rel = rel[1:]
        keys.append(f"{s.split or ''}:{Path(*rel).with_suffix('').as_posix()}")
    return keys
