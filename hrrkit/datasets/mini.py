"""Build (or reuse) the offline mini-benchmark: real crops and diffusion samples, split for HRR's tests.

:func:`build_mini_benchmark` writes, under one folder per (mode, seed, recipe version)::

    <root>/<key>/
        manifest.csv          path,label,generator,split,source + format,quality,height,width,seed,sha256
        build.json            the config, the cache key's inputs, versions, counts and timings;
                              written last, so its presence marks a complete build
        train/real/00000.png  ...
        train/fake/unet-ddim/00000.jpg ...
        test_heldout_generator/fake/attn-unet-ddpm/...

``manifest.csv`` is readable by :func:`hrrkit.data.layouts.read_csv_manifest` (and so by every
``hrrkit`` command that takes a CSV manifest).

Splits (``n`` images per class in each; see :data:`FULL` and :data:`QUICK` for ``n``):

=========================  ======================================  ==========================
split                      fakes                                   sizes (both classes)
=========================  ======================================  ==========================
``train``                  the seen generator (``unet-ddim``)      :data:`SEEN_SIZES`
``val``                    the seen generator                      :data:`SEEN_SIZES`
``test_seen``              the seen generator, new samples         :data:`SEEN_SIZES`
``test_heldout_generator`` the held-out generator                  :data:`SEEN_SIZES`
``test_unseen_sizes``      the seen generator                      :data:`UNSEEN_SIZES`
=========================  ======================================  ==========================

Nothing but the intended factor differs between real and fake inside a split: within every
(split, class) each size gets the same number of images, half of every size is PNG and half JPEG,
and JPEG qualities come from the same range for both classes.

The build is deterministic given the seed: every image has its own seed (from
``numpy.random.SeedSequence(seed, spawn_key=(split, label, index))``); a real image's crop and a
fake's sampler noise and crop window are drawn from it and it is recorded in the manifest, so any
image can be made again (:meth:`MiniBenchmark.regenerate`). Same machine and torch build give the
same bytes; another CPU may round differently (the manifest's hashes then describe that build).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hrrkit.datasets._files import write_build_record, write_manifest_csv
from hrrkit.datasets.generators import (
    GENERATORS,
    HELDOUT_GENERATOR,
    SEEN_GENERATOR,
    load_generator,
    sample_images,
    weights_digest,
)
from hrrkit.datasets.sources import photograph_digest, random_crop_spec, render_crop

__all__ = [
    "FULL",
    "QUICK",
    "RECIPE_VERSION",
    "SEEN_SIZES",
    "SPLITS",
    "UNSEEN_SIZES",
    "MiniBenchmark",
    "MiniBenchmarkConfig",
    "build_mini_benchmark",
    "default_cache_root",
]

#: Bump when anything that changes the bytes of a build changes (it is part of the cache key).
RECIPE_VERSION = 1

#: (height, width) of the images in every split but ``test_unseen_sizes``: square, odd and oblong.
SEEN_SIZES: tuple[tuple[int, int], ...] = ((32, 32), (35, 35), (40, 40), (33, 41))
#: (height, width) only ``test_unseen_sizes`` has: smaller, larger, odd and of the other orientation.
UNSEEN_SIZES: tuple[tuple[int, int], ...] = ((28, 28), (45, 45), (48, 36), (56, 56))

#: The splits in build order, with the generator of their fakes and their size set.
SPLITS: dict[str, tuple[str, tuple[tuple[int, int], ...]]] = {
    "train": (SEEN_GENERATOR, SEEN_SIZES),
    "val": (SEEN_GENERATOR, SEEN_SIZES),
    "test_seen": (SEEN_GENERATOR, SEEN_SIZES),
    "test_heldout_generator": (HELDOUT_GENERATOR, SEEN_SIZES),
    "test_unseen_sizes": (SEEN_GENERATOR, UNSEEN_SIZES),
}

_MANIFEST_COLUMNS = ("path", "label", "generator", "split", "source", "format", "quality", "height", "width", "seed", "sha256")
_SOURCE = "skimage-photographs"


@dataclass(frozen=True)
class MiniBenchmarkConfig:
    """What a build contains.

    Attributes:
        per_class: images per class (real, fake) in each split; each must be a multiple of
            ``2 * len(sizes)`` of its split so sizes and formats balance exactly.
        jpeg_quality: inclusive range of JPEG qualities, drawn per image (same for both classes).
        batch_size: samples per sampler call.
        sampling_steps: override of every generator's sampling steps (``None``: the spec's).
    """

    per_class: dict[str, int] = field(hash=False)
    jpeg_quality: tuple[int, int] = (75, 95)
    batch_size: int = 64
    sampling_steps: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.per_class) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown splits {sorted(unknown)}; the splits are {list(SPLITS)}")
        for split, count in self.per_class.items():
            step = 2 * len(SPLITS[split][1])
            if count < step or count % step:
                raise ValueError(f"{split}: per_class={count} must be a positive multiple of {step} (sizes x formats)")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"jpeg_quality must be a range within 1..100, got {self.jpeg_quality}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


#: The default build (``quick=False``): 440 real + 440 generated images.
FULL = MiniBenchmarkConfig(
    per_class={"train": 160, "val": 40, "test_seen": 80, "test_heldout_generator": 80, "test_unseen_sizes": 80}
)
#: ``quick=True`` (tests, ``hrrkit demo --quick``): 96 real + 96 generated images.
QUICK = MiniBenchmarkConfig(
    per_class={"train": 32, "val": 16, "test_seen": 16, "test_heldout_generator": 16, "test_unseen_sizes": 16}
)


def default_cache_root() -> Path:
    """``$HRRKIT_CACHE/mini-benchmark``, else ``$XDG_CACHE_HOME/hrrkit/mini-benchmark``, else ``~/.cache/...``."""
    from hrrkit.utils.cache import cache_root

    return cache_root() / "mini-benchmark"


# --------------------------------------------------------------------------------------------------
# the plan: every image's split, label, size, format and seed, before anything is rendered
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    split: str
    label: int
    generator: str | None
    index: int
    height: int
    width: int
    format: str
    quality: int | None
    seed: int

    @property
    def relpath(self) -> str:
        ext = "png" if self.format == "png" else "jpg"
        folder = f"{self.split}/real" if self.label == 0 else f"{self.split}/fake/{self.generator}"
        return f"{folder}/{self.index:05d}.{ext}"


def _plan(config: MiniBenchmarkConfig, seed: int) -> list[_Item]:
    items = []
    for split_index, (split, (generator, sizes)) in enumerate(SPLITS.items()):
        count = config.per_class.get(split, 0)
        for label in (0, 1):
            # sizes and formats: the same balanced assignment for both classes, shuffled by the seed
            layout = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, label, 1 << 20)))
            per_size = count // len(sizes)
            slots = [(size, fmt) for size in sizes for fmt in ("png", "jpeg") for _ in range(per_size // 2)]
            order = layout.permutation(len(slots))
            for index, slot in enumerate(order):
                (height, width), fmt = slots[slot]
                state = np.random.SeedSequence(seed, spawn_key=(split_index, label, index))
                item_seed = int(state.generate_state(1, dtype=np.uint32)[0])
                quality = None
                if fmt == "jpeg":
                    low, high = config.jpeg_quality
                    quality = int(np.random.default_rng(state.spawn(1)[0]).integers(low, high + 1))
                items.append(
                    _Item(split, label, generator if label == 1 else None, index, height, width, fmt, quality, item_seed)
                )
    return items


def _encode(pixels: np.ndarray, item: _Item) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(pixels, mode="RGB")
    if item.format == "png":
        image.save(buffer, format="PNG", compress_level=6)
    else:
        image.save(buffer, format="JPEG", quality=item.quality, subsampling="4:2:0", optimize=False)
    return buffer.getvalue()


def _render_real(item: _Item) -> np.ndarray:
    return render_crop(random_crop_spec(np.random.default_rng(item.seed), item.height, item.width))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    return _sha256(path.read_bytes())


# --------------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------------


@dataclass
class MiniBenchmark:
    """A complete mini-benchmark on disk.

    Attributes:
        root: the build's folder.
        manifest: ``root / "manifest.csv"`` (read it with :meth:`samples` or ``read_csv_manifest``).
        key: the cache key (folder name).
        config: what was built.
        seed: the build seed.
        reused: ``True`` when a complete cached build was verified and reused.
        seconds: time this call took (build or verification).
        info: the contents of ``build.json``.
    """

    root: Path
    manifest: Path
    key: str
    config: MiniBenchmarkConfig
    seed: int
    reused: bool
    seconds: float
    info: dict[str, Any]

    @property
    def seen_generator(self) -> str:
        return SEEN_GENERATOR

    @property
    def heldout_generator(self) -> str:
        return HELDOUT_GENERATOR

    def records(self, split: str | None = None) -> list[dict[str, str]]:
        """The manifest rows (all columns, as strings), optionally of one split."""
        with open(self.manifest, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if split is not None:
            if split not in SPLITS:
                raise KeyError(f"unknown split {split!r}; the splits are {list(SPLITS)}")
            rows = [row for row in rows if row["split"] == split]
        return rows

    def samples(self, split: str | None = None):
        """``hrrkit.data.layouts.Sample`` objects (absolute paths), optionally of one split."""
        from hrrkit.data.layouts import read_csv_manifest

        samples = read_csv_manifest(self.manifest)
        if split is not None:
            if split not in SPLITS:
                raise KeyError(f"unknown split {split!r}; the splits are {list(SPLITS)}")
            samples = [s for s in samples if s.split == split]
        return samples

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"real": n, "fake": n}}``."""
        out: dict[str, dict[str, int]] = {split: {"real": 0, "fake": 0} for split in SPLITS}
        for row in self.records():
            out[row["split"]]["fake" if row["label"] == "1" else "real"] += 1
        return out

    def verify(self) -> list[str]:
        """Problems with the files on disk (missing, or a SHA-256 differing from the manifest); [] if none."""
        return _verify(self.root)

    def regenerate(self, record: dict[str, str]) -> np.ndarray:
        """Render the pixels of a manifest row again from its seed (before PNG/JPEG encoding).

        A fake is sampled again, alone, by its generator's sampler; a real crop is cut again.
        Returns ``uint8`` ``(height, width, 3)``.
        """
        item = _item_from_record(record)
        if item.label == 0:
            return _render_real(item)
        generator = load_generator(item.generator)
        return sample_images(generator, [item.seed], (item.height, item.width), steps=self.config.sampling_steps)[0]


def _item_from_record(record: dict[str, str]) -> _Item:
    quality = record.get("quality") or None
    return _Item(
        split=record["split"],
        label=int(record["label"]),
        generator=record.get("generator") or None,
        index=int(Path(record["path"]).stem),
        height=int(record["height"]),
        width=int(record["width"]),
        format=record["format"],
        quality=int(quality) if quality else None,
        seed=int(record["seed"]),
    )


# --------------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------------


def _cache_inputs(config: MiniBenchmarkConfig, seed: int) -> dict[str, Any]:
    return {
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "config": config.to_dict(),
        "splits": {split: {"generator": g, "sizes": [list(s) for s in sizes]} for split, (g, sizes) in SPLITS.items()},
        "generators": {name: GENERATORS[name].to_dict() for name in sorted({g for g, _ in SPLITS.values()})},
        "weights_sha256": {name: weights_digest(name) for name in sorted({g for g, _ in SPLITS.values()})},
        "photographs_sha256": photograph_digest(),
    }


def _cache_key(inputs: dict[str, Any], quick: bool) -> str:
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return f"{'quick' if quick else 'full'}-seed{inputs['seed']}-{digest}"


def _verify(folder: Path) -> list[str]:
    problems = []
    if not (folder / "build.json").is_file():
        return [f"{folder}: no build.json (the build did not finish)"]
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return [f"{manifest}: missing"]
    try:
        with open(manifest, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        info = json.loads((folder / "build.json").read_text())
    except (OSError, ValueError, csv.Error) as exc:
        return [f"{folder}: unreadable manifest or build.json ({exc})"]
    if len(rows) != info.get("images"):
        problems.append(f"{manifest}: {len(rows)} rows, build.json records {info.get('images')}")
    if _file_sha256(manifest) != info.get("manifest_sha256"):
        problems.append(f"{manifest}: SHA-256 differs from build.json's")
    for row in rows:
        path = folder / row["path"]
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif _file_sha256(path) != row["sha256"]:
            problems.append(f"{path}: SHA-256 differs from the manifest (corrupted or edited)")
    return problems


def _remove_tree(folder: Path) -> None:
    # move aside first so a half-deleted folder never carries the build's name
    if not folder.exists():
        return
    trash = folder.with_name(f".{folder.name}.trash-{uuid.uuid4().hex[:8]}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _batches(items: Sequence[_Item], batch_size: int) -> Iterator[list[_Item]]:
    groups: dict[tuple[str, int, int], list[_Item]] = {}
    for item in items:
        groups.setdefault((item.generator or "", item.height, item.width), []).append(item)
    for key in sorted(groups):
        group = groups[key]
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


# --------------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------------


def build_mini_benchmark(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    config: MiniBenchmarkConfig | None = None,
    rebuild: bool = False,
    verify: bool = True,
) -> MiniBenchmark:
    """Build the mini-benchmark, or reuse a complete cached build of the same recipe, seed and mode.

    Args:
        root: parent folder of builds (default :func:`default_cache_root`); the build goes into
            ``root/<mode>-seed<seed>-<hash of the recipe, weights and photographs>``.
        seed: build seed (images, sizes, formats, JPEG qualities, sampler noise).
        quick: the small :data:`QUICK` build instead of :data:`FULL`.
        progress: show a tqdm progress bar.
        config: a custom :class:`MiniBenchmarkConfig` (overrides ``quick``'s preset; the folder name
            still says quick/full, the hash tells the configs apart).
        rebuild: discard any cached build first.
        verify: check every cached file's SHA-256 before reuse (a broken build is rebuilt).

    Returns:
        The :class:`MiniBenchmark`. Raises ``SourceUnavailableError`` without scikit-image and
        ``WeightsUnavailableError`` without the shipped generator weights.
    """
    started = time.perf_counter()
    config = config or (QUICK if quick else FULL)
    inputs = _cache_inputs(config, seed)
    key = _cache_key(inputs, quick)
    parent = Path(root).expanduser() if root is not None else default_cache_root()
    final = parent / key

    if final.exists() and not rebuild:
        problems = _verify(final) if verify else ([] if (final / "build.json").is_file() else ["incomplete"])
        if not problems:
            info = json.loads((final / "build.json").read_text())
            return MiniBenchmark(final, final / "manifest.csv", key, config, seed, True, time.perf_counter() - started, info)
        if progress:
            print(f"mini-benchmark: cached build {final} is broken ({len(problems)} problems, e.g. {problems[0]}); rebuilding")
    if final.exists():
        _remove_tree(final)

    partial = parent / f".{key}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    try:
        info = _build_into(partial, config, seed, inputs, key, progress)
        try:
            os.replace(partial, final)
        except OSError:
            # another process published the same build first: keep theirs if it is sound
            if _verify(final):
                raise
            shutil.rmtree(partial, ignore_errors=True)
            info = json.loads((final / "build.json").read_text())
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return MiniBenchmark(final, final / "manifest.csv", key, config, seed, False, time.perf_counter() - started, info)


def _build_into(
    folder: Path, config: MiniBenchmarkConfig, seed: int, inputs: dict[str, Any], key: str, progress: bool
) -> dict[str, Any]:
    import diffusers
    import torch
    from tqdm.auto import tqdm

    items = _plan(config, seed)
    rows: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}

    def write(item: _Item, pixels: np.ndarray) -> None:
        data = _encode(pixels, item)
        path = folder / item.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows[item.relpath] = {
            "path": item.relpath,
            "label": item.label,
            "generator": item.generator or "",
            "split": item.split,
            "source": _SOURCE,
            "format": item.format,
            "quality": item.quality if item.quality is not None else "",
            "height": item.height,
            "width": item.width,
            "seed": item.seed,
            "sha256": _sha256(data),
        }

    reals = [item for item in items if item.label == 0]
    fakes = [item for item in items if item.label == 1]
    with tqdm(total=len(items), desc="mini-benchmark", unit="img", disable=not progress) as bar:
        tick = time.perf_counter()
        bar.set_postfix_str("real crops")
        for item in reals:
            write(item, _render_real(item))
            bar.update(1)
        timings["reals_s"] = round(time.perf_counter() - tick, 2)
        for name in sorted({item.generator for item in fakes}):
            tick = time.perf_counter()
            generator = load_generator(name)
            mine = [item for item in fakes if item.generator == name]
            for batch in _batches(mine, config.batch_size):
                height, width = batch[0].height, batch[0].width
                bar.set_postfix_str(f"sampling {name} {height}x{width}")
                pixels = sample_images(generator, [item.seed for item in batch], (height, width), steps=config.sampling_steps)
                for item, image in zip(batch, pixels):
                    write(item, image)
                bar.update(len(batch))
            timings[f"sampling_{name}_s"] = round(time.perf_counter() - tick, 2)

    ordered = [rows[item.relpath] for item in items]
    write_manifest_csv(folder / "manifest.csv", _MANIFEST_COLUMNS, ordered)
    counts = {split: {"real": 0, "fake": 0} for split in SPLITS}
    for item in items:
        counts[item.split]["fake" if item.label else "real"] += 1
    return write_build_record(
        folder, key=key, inputs=inputs, images=len(items), counts=counts,
        seen_generator=SEEN_GENERATOR, heldout_generator=HELDOUT_GENERATOR, timings=timings,
        versions={"torch": torch.__version__, "diffusers": diffusers.__version__, "numpy": np.__version__},
    )  # last: its presence marks a complete build

