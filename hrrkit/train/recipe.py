"""Training recipes: one config file → data, detector, training, evaluation (``hrrkit train CONFIG``).

A run config (YAML or JSON)::

    detector: {preset: hrr, head: {num_basis: 8}}   # a preset name and/or DetectorConfig fields
    data:
      root: /data/ForenSynths         # a dataset folder in any supported layout, or a CSV manifest
      layout: auto
      train_split: train              # null = every sample not in val/test
      val_split: val                  # null = a seeded val_fraction of the training samples
      test_split: test                # evaluated with the best checkpoint at the end (null = skip)
      train_generators: null          # or e.g. [adm]: restrict the training fakes to these generators
    train: {epochs: 5, batch_size: 16, lr: 0.001}
    output_dir: runs/forensynths-hrr

Relative paths in the file are resolved against the file's folder.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hrrkit.data.dataset import ImageDataset
from hrrkit.data.layouts import Sample, read_layout
from hrrkit.eval.predict import predict_dataset
from hrrkit.models.config import ConfigError, DetectorConfig, load_config_file
from hrrkit.models.detector import HRRDetector
from hrrkit.models.presets import preset_config
from hrrkit.train.config import TrainConfig
from hrrkit.train.trainer import TrainResult, fit, seed_everything
from hrrkit.utils.device import resolve_device

DATA_FIELD_DOCS: dict[str, str] = {
    "data.root": "The data set: a folder in any supported layout or a CSV manifest; relative to the run config.",
    "data.layout": "`auto` (detected), `forensynths`, `genimage`, `diffusionforensics`, `flat` or `csv`.",
    "data.train_split": "Split trained on; `null` = every sample not in the validation or test split.",
    "data.val_split": "Split validated on each epoch; `null` (or absent on disk) = a seeded, stratified "
                      "`val_fraction` of the training samples.",
    "data.test_split": "Split scored with the best checkpoint at the end (`test_report/`); `null` = none.",
    "data.val_fraction": "Fraction of each class carved out of training for validation when there is no validation split.",
    "data.train_generators": "Train only on these generators' fakes (and the reals paired with them, plus shared reals); "
                             "`null` = all. Validation and test keep every generator.",
    "data.pairs": "Paired augmentation for aligned data (`hrrkit data align`): a real photo and its reconstructions "
                  "(same name below `real/` and `fake/<generator>/`) get the same random crop and augmentation and "
                  "share a training batch.",
}
RUN_FIELD_DOCS: dict[str, str] = {
    "output_dir": "The run folder (checkpoints, `best/`, logs, test report); relative to the run config.",
    "device": "`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.",
}


@dataclass
class DataConfig:
    root: str = ""
    layout: str = "auto"
    train_split: str | None = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    val_fraction: float = 0.1
    train_generators: list[str] | None = None
    pairs: bool = False

    def __post_init__(self) -> None:
        if not self.root:
            raise ConfigError("data.root: required (a dataset folder or a CSV manifest)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={self.val_fraction}: must be in [0, 1)")


@dataclass
class RunConfig:
    detector: DetectorConfig
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs/hrr"
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector.to_dict(), "data": asdict(self.data), "train": self.train.to_dict(),
            "output_dir": self.output_dir, "device": self.device,
        }


def detector_config_from(spec: Any, where: str = "detector") -> DetectorConfig:
    """A DetectorConfig from ``None``, a preset name, or a mapping with an optional ``preset`` key."""
    if spec is None:
        return preset_config("hrr")
    if isinstance(spec, str):
        return preset_config(spec)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a preset name or a mapping")
    spec = dict(spec)
    base = preset_config(spec.pop("preset", "hrr")).to_dict()
    return DetectorConfig.from_dict(_deep_merge(base, spec, where), where=where)


def _deep_merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if key not in base:
            raise ConfigError(f"{where}.{key}: unknown field; known: {sorted(base)}")
        if isinstance(value, dict) and isinstance(base[key], dict) and key not in ("options",):
            out[key] = _deep_merge(base[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def load_run_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a run config file; relative paths are resolved against its folder."""
    path = Path(path)
    raw = load_config_file(path)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    known = {"detector", "data", "train", "output_dir", "device"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level field(s) {unknown}; known: {sorted(known)}")
    if "data" not in raw:
        raise ConfigError(f"{path}: 'data' section missing (data.root names the dataset)")
    base = path.resolve().parent

    def resolve(p: str | None) -> str | None:
        return None if p is None else str((base / os.path.expanduser(p)).resolve())

    data_raw = dict(raw["data"])
    data_known = {f.name for f in fields(DataConfig)}
    if set(data_raw) - data_known:
        raise ConfigError(f"{path}: data: unknown field(s) {sorted(set(data_raw) - data_known)}; known: {sorted(data_known)}")
    data_raw["root"] = resolve(data_raw.get("root")) or ""
    detector = detector_config_from(raw.get("detector"), where=f"{path}: detector")
    for section in ("retrospector", "backbone"):
        sub = getattr(detector, section)
        key = "path" if section == "retrospector" else "pretrained_path"
        if getattr(sub, key) and not str(getattr(sub, key)).startswith("hrrkit:"):  # hrrkit:<name> ships inside
            setattr(sub, key, resolve(getattr(sub, key)))
    train = TrainConfig.from_dict(raw.get("train", {}))
    train.retrospection_cache = resolve(train.retrospection_cache)
    return RunConfig(
        detector=detector,
        data=DataConfig(**data_raw),
        train=train,
        output_dir=resolve(raw.get("output_dir", "runs/hrr")),
        device=raw.get("device", "auto"),
    )


def split_samples(data: DataConfig, seed: int) -> dict[str, list[Sample]]:
    """The train / val / test samples of a data config."""
    samples = read_layout(data.root, data.layout)
    canon = lambda s: {"valid": "val", "validation": "val"}.get((s or "").lower(), (s or "").lower())  # noqa: E731
    by_split: dict[str, list[Sample]] = {}
    for s in samples:
        by_split.setdefault(canon(s.split), []).append(s)
    wanted = {k: canon(v) if v else None for k, v in
              (("train", data.train_split), ("val", data.val_split), ("test", data.test_split))}
    test = by_split.get(wanted["test"], []) if wanted["test"] else []
    val = by_split.get(wanted["val"], []) if wanted["val"] else []
    if wanted["train"]:
        train = by_split.get(wanted["train"], [])
        if not train and set(by_split) == {""}:
            train = by_split[""]  # an unsplit data set: everything is training data
    else:
        used = {wanted["val"], wanted["test"]}
        train = [s for k, v in by_split.items() if k not in used for s in v]
    if not train:
        raise ConfigError(f"data: no training samples in split {data.train_split!r} of {data.root} "
                          f"(splits present: {sorted(k or 'none' for k in by_split)})")
    if data.train_generators:
        # the kept generators' fakes, the reals paired with them (ForenSynths, GenImage) and the
        # shared reals (generator None: DiffusionForensics, flat)
        keep = set(data.train_generators)
        present = {s.generator for s in train if s.label == 1}
        if not keep & present:
            raise ConfigError(f"data.train_generators={sorted(keep)}: none of them in the training split; "
                              f"its generators are {sorted(g for g in present if g)}")
        train = [s for s in train if s.generator in keep or (s.label == 0 and s.generator is None)]
    if not val and data.val_fraction > 0:
        # stratified by label, so validation AP is defined (both classes present) whenever it can be
        rng = random.Random(seed)
        val_idx: set[int] = set()
        for label in (0, 1):
            members = [i for i, s in enumerate(train) if s.label == label]
            rng.shuffle(members)
            n_val = max(1, int(round(len(members) * data.val_fraction))) if len(members) > 1 else 0
            val_idx.update(members[:n_val])
        val = [s for i, s in enumerate(train) if i in val_idx]
        train = [s for i, s in enumerate(train) if i not in val_idx]
        if int(os.environ.get("RANK", "0")) == 0:
            where = f"no {data.val_split!r} split in {data.root}" if data.val_split else "val_split is null"
            print(f"validation: {where}; {len(val)} training images "
                  f"({data.val_fraction:.0%} of each class, seed {seed}) are held out for validation", flush=True)
    return {"train": train, "val": val, "test": test}


def make_datasets(detector: DetectorConfig, splits: dict[str, list[Sample]], seed: int, *,
                  pairs: bool = False) -> dict[str, ImageDataset]:
    """Train / val / test datasets; ``pairs``: the training set keys its randomness and batches by
    :func:`hrrkit.data.aligned.pair_keys` (paired augmentation)."""
    inp = detector.input
    keys = None
    if pairs:
        from hrrkit.data.aligned import pair_keys

        keys = pair_keys(splits["train"])
    return {"train": inp.dataset(splits["train"], train=True, seed=seed, pair_keys=keys),
            **{name: inp.dataset(splits[name], seed=seed) for name in ("val", "test")}}


def run_training(config: RunConfig, *, resume: bool = True, progress: bool = True, evaluate: bool = True) -> TrainResult:
    """Train the detector of ``config``; with ``evaluate`` score the test split with the best checkpoint
    and write ``<output_dir>/test_report/``."""
    seed_everything(config.train.seed)
    device = resolve_device(config.device, where="hrrkit train")
    splits = split_samples(config.data, config.train.seed)
    datasets = make_datasets(config.detector, splits, config.train.seed, pairs=config.data.pairs)
    model = HRRDetector(config.detector)
    if config.train.retrospection_cache:  # retrospect each image once; every epoch reads the cache
        from hrrkit.retrospect.views import RetrospectedDataset, RetrospectionStage

        datasets = {name: RetrospectedDataset(data, RetrospectionStage(model, seed=config.train.seed,
                                                                       dither=True if name == "train" else None),
                                              config.train.retrospection_cache)
                    for name, data in datasets.items()}
    result = fit(model, datasets["train"], datasets["val"] if len(datasets["val"]) else None, config.train,
                 config.output_dir, device=device, resume=resume, progress=progress, run_config=config.to_dict())
    if evaluate and len(datasets["test"]) and int(os.environ.get("RANK", "0")) == 0:
        from hrrkit.eval.report import write_report
        from hrrkit.models.detector import load_detector

        best = load_detector(Path(config.output_dir) / "best", device=device)
        pred = predict_dataset(best, datasets["test"], batch_size=config.train.batch_size, device=device,
                               progress=progress, desc="test")
        from hrrkit.retrospect.registry import retrospector_label

        write_report(pred, Path(config.output_dir) / "test_report", threshold=best.config.threshold,
                     title=f"{config.detector.name} on {Path(config.data.root).name} (test split)",
                     context={"detector": best.config.name, "retrospector": retrospector_label(best.config.retrospector)})
        print(f"test report: {Path(config.output_dir) / 'test_report' / 'report.md'}", flush=True)
    return result


def config_reference_markdown() -> str:
    """The field tables of ``docs/config.md`` (detector, data, train, run), generated from the
    dataclasses (types, defaults) and the ``FIELD_DOCS`` tables (meanings)."""
    from hrrkit.models.config import FIELD_DOCS as DETECTOR_DOCS
    from hrrkit.models.config import field_rows
    from hrrkit.train.config import FIELD_DOCS as TRAIN_DOCS

    def table(rows) -> list[str]:
        out = ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, type_name, default, meaning in rows:
            cells = [f"`{name}`", f"`{type_name}`", f"`{default}`", meaning]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")  # GitHub tables need \|
        return out

    def rows_of(cls, docs, prefix):
        return field_rows(cls, {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in docs.items()}, prefix="")

    detector = [(f"detector.{n}", t, d, m) for n, t, d, m in field_rows(DetectorConfig, DETECTOR_DOCS)]
    data = [(f"data.{n}", t, d, m) for n, t, d, m in rows_of(DataConfig, DATA_FIELD_DOCS, "data.")]
    data = [r if r[0] != "data.root" else (r[0], r[1], "required", r[3]) for r in data]
    train = [(f"train.{n}", t, d, m) for n, t, d, m in field_rows(TrainConfig, TRAIN_DOCS)]
    run = [(f.name, "str", f'"{f.default}"', RUN_FIELD_DOCS[f.name]) for f in fields(RunConfig) if f.name in RUN_FIELD_DOCS]
    lines = ["### `detector` (DetectorConfig; saved in every detector folder's `config.json`)", ""]
    lines += table(detector)
    lines += ["", "### `data` (DataConfig)", ""] + table(data)
    lines += ["", "### `train` (TrainConfig)", ""] + table(train)
    lines += ["", "### top level", ""] + table(run)
    return "\n".join(lines) + "\n"
