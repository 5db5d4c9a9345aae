"""Training settings, serialisable with the detector config so a run can be reproduced."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SCHEDULES = ("cosine", "constant", "step")
AMP_MODES = ("auto", "off", "bf16", "fp16")


FIELD_DOCS: dict[str, str] = {
    "epochs": "Passes over the training set.",
    "batch_size": "Images per optimiser step (per process under `torchrun`).",
    "lr": "AdamW learning rate (peak, after warm-up).",
    "weight_decay": "AdamW decoupled weight decay; not applied to biases, norms and the additive head's β "
                    "(its group penalty does that job).",
    "schedule": "`cosine` (to 0 over the run), `constant`, or `step` (×0.1 at 2/3 of the steps).",
    "warmup_steps": "Linear warm-up steps before the schedule.",
    "amp": "`auto` (bf16 autocast on CUDA, off on CPU), `off`, `bf16` or `fp16` (with a gradient scaler).",
    "grad_clip": "Maximum global gradient norm; 0 disables clipping.",
    "seed": "Seeds initialisation, data order, crops, augmentation and dither: same seed, same weights "
            "(also across a kill and resume).",
    "early_stopping_patience": "Stop after this many epochs without a better validation AP; 0 disables.",
    "num_workers": "DataLoader worker processes.",
    "max_steps_per_epoch": "Cap on steps per epoch for quick runs; `null` = the whole training set.",
    "log_every": "Write a JSONL step record every this many steps.",
    "keep_checkpoints": "Epoch checkpoints kept in `checkpoints/` (the newest ones); `best/` is kept apart.",
    "retrospection_cache": "Folder of the cached retrospection stage: each image's (x̃_s, x̂_s) pairs are computed "
                           "once, stored there and read by training, validation and the test report (crops cut "
                           "jointly afterwards); `null` = the retrospector runs in every forward pass. Relative "
                           "to the run config.",
}


@dataclass
class TrainConfig:
    """How a detector is trained.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per optimiser step (per process under torchrun).
        lr: AdamW learning rate; weight_decay: AdamW decoupled weight decay (not applied to the
            additive head's β, whose group-sparsity penalty and proximal step do that job).
        schedule: ``cosine`` (to 0 over the run, after ``warmup_steps`` of linear warm-up),
            ``constant`` or ``step`` (×0.1 at 2/3 of the epochs).
        amp: ``auto`` (bf16 autocast on CUDA, off on CPU), ``off``, ``bf16`` or ``fp16``.
        grad_clip: max global gradient norm (0 disables).
        seed: seeds parameters' initialisation, data order, crops, augmentation and dither.
        early_stopping_patience: stop after this many epochs without a better validation AP
            (0 disables).
        num_workers: DataLoader worker processes.
        max_steps_per_epoch: cap for quick runs (``None`` = the whole training set).
        log_every: write a JSONL step record every this many steps.
        keep_checkpoints: how many epoch checkpoints to keep besides the best one.
        retrospection_cache: folder of the cached retrospection stage
            (:mod:`hrrkit.retrospect.views`), or ``None`` for the in-forward path.
    """

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    amp: str = "auto"
    grad_clip: float = 1.0
    seed: int = 0
    early_stopping_patience: int = 5
    num_workers: int = 0
    max_steps_per_epoch: int | None = None
    log_every: int = 10
    keep_checkpoints: int = 2
    retrospection_cache: str | None = None

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("lr", self.lr > 0, "must be > 0"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("schedule", self.schedule in SCHEDULES, f"must be one of {SCHEDULES}"),
            ("warmup_steps", self.warmup_steps >= 0, "must be >= 0"),
            ("amp", self.amp in AMP_MODES, f"must be one of {AMP_MODES}"),
            ("grad_clip", self.grad_clip >= 0, "must be >= 0"),
            ("early_stopping_patience", self.early_stopping_patience >= 0, "must be >= 0"),
            ("num_workers", self.num_workers >= 0, "must be >= 0"),
            ("max_steps_per_epoch", self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1, "must be >= 1"),
            ("log_every", self.log_every >= 1, "must be >= 1"),
            ("keep_checkpoints", self.keep_checkpoints >= 1, "must be >= 1"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"train.{name}={getattr(self, name)!r}: {why}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"train: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)
