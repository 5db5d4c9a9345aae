"""The training loop: AdamW, schedule, AMP, clipping, seeds, validation, best-AP checkpoint, early
stopping, resume, JSONL logs, progress bar, DistributedDataParallel under ``torchrun``.

The model contract (``HRRDetector`` and the baselines follow it):

* ``model(images) -> output`` with ``output.logits`` of shape ``(N,)`` (one per image or tile);
* ``model.compute_loss(output, labels) -> (loss, parts)`` with ``labels`` float ``(N,)`` in {0, 1}
  and ``parts`` a dict of floats for logging;
* optionally ``model.after_optimizer_step(lr)`` (e.g. the additive head's proximal step);
* ``model.config.to_dict()`` for the checkpoint.

Run folder::

    run/
      config.json                  detector + training config of the run
      log.jsonl                    one JSON record per logged step and per epoch
      checkpoints/epoch_0003/      model.safetensors, config.json, trainer.pt, state.json
      last.json                    {"checkpoint": "checkpoints/epoch_0003"} (written last, atomically)
      best/                        the detector folder of the best validation AP (hrrkit.load_detector)
      skipped_files.json           unreadable files met during training, with reasons

A run killed at any moment resumes from ``last.json``: an epoch checkpoint is referenced only after
all of its files were written. Epoch ``e`` depends only on the state saved after epoch ``e − 1`` and
on ``(seed, e)``, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hrrkit.data.dataset import ImageDataset, SizeBucketBatchSampler, SkipLog, collate_samples
from hrrkit.eval.metrics import average_precision
from hrrkit.eval.predict import predict_dataset
from hrrkit.models.checkpoint import CheckpointError, load_detector_state, read_detector_folder, save_detector
from hrrkit.train.config import TrainConfig
from hrrkit.utils.atomic import atomic_write_json, atomic_write_with


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    best_ap: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


# ----------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def broadcast_flag(self, value: bool) -> bool:
        if self.world == 1:
            return value
        t = torch.tensor([1 if value else 0])
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())

    def gather_lists(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every rank's ``items`` concatenated (on every rank); plain dicts of strings only."""
        if self.world == 1:
            return items
        gathered: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(gathered, items)
        return [item for part in gathered for item in part]

    def any_flag(self, value: bool) -> bool:
        """True on every rank when ``value`` is true on any rank (keeps collectives in lockstep)."""
        if self.world == 1:
            return value
        t = torch.tensor([1 if value else 0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())


def _setup_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        here = True
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), initialised_here=here)


# ----------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(device: torch.device, amp: str):
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _lr_lambda(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "step":
            return 0.1 if step >= (2 * total_steps) // 3 else 1.0
        span = max(total_steps - config.warmup_steps, 1)
        progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # no decay for biases, norms and parameters a module marks as sparsity-penalised (no_weight_decay)
    skip: set[str] = set()
    for mod_name, module in model.named_modules():
        names = getattr(module, "no_weight_decay", None)
        if callable(names):
            skip |= {f"{mod_name}.{n}" if mod_name else n for n in names()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _batch_sampler(sizes, config: TrainConfig, *, dist: _Dist, epoch: int, groups=None) -> SizeBucketBatchSampler:
    """This rank's shuffled batches of equal-size items for ``epoch`` (``sizes`` from ``header_sizes``;
    ``groups``: the dataset's ``pair_keys``, whose pairs stay in one batch)."""
    sampler = SizeBucketBatchSampler(
        sizes, config.batch_size, shuffle=True, seed=config.seed, num_replicas=dist.world, rank=dist.rank,
        groups=groups,
    )
    sampler.set_epoch(epoch)
    return sampler


def _loader(dataset: ImageDataset, sizes, config: TrainConfig, *, dist: _Dist, epoch: int) -> DataLoader:
    dataset.set_epoch(epoch)
    return DataLoader(
        dataset, batch_sampler=_batch_sampler(sizes, config, dist=dist, epoch=epoch,
                                              groups=getattr(dataset, "pair_keys", None)),
        collate_fn=getattr(dataset, "collate", collate_samples),  # cached retrospection batches its own views
        num_workers=config.num_workers, persistent_workers=False,
    )


def _labels_for(batch: dict[str, Any]) -> torch.Tensor:
    labels = batch["labels"].float()
    if "tile_owner" in batch:
        labels = labels[batch["tile_owner"]]
    return labels


# ----------------------------------------------------------------------------- checkpoints


CHECKPOINT_FILES = ("model.safetensors", "config.json", "trainer.pt", "state.json")


def _save_epoch_checkpoint(
    run_dir: Path, model: nn.Module, optimizer, scheduler, scaler, state: dict[str, Any], keep: int
) -> None:
    """Write ``checkpoints/epoch_<e>/`` file by file (``state.json`` last), then point ``last.json``
    at it, then prune older epoch folders. A kill at any moment leaves ``last.json`` naming a
    complete checkpoint."""
    name = f"epoch_{state['epoch']:04d}"
    folder = run_dir / "checkpoints" / name
    if folder.exists():
        shutil.rmtree(folder)
    save_detector(model, folder)
    trainer_state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    atomic_write_with(folder / "trainer.pt", lambda tmp: torch.save(trainer_state, tmp))
    atomic_write_json(folder / "state.json", state)
    atomic_write_json(run_dir / "last.json", {"checkpoint": f"checkpoints/{name}", "epoch": state["epoch"]})
    # prune old epoch checkpoints: the newest `keep` by epoch number, never the one last.json names
    epochs = sorted(p for p in (run_dir / "checkpoints").glob("epoch_*") if p.is_dir() and p.name != name)
    for old in epochs[: max(len(epochs) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)


def _complete_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The ``state.json`` of a checkpoint folder holding every file, else ``None``."""
    if not all((folder / f).is_file() for f in CHECKPOINT_FILES):
        return None
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) and "epoch" in state else None


def _load_last_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from: the one ``last.json`` names; if that pointer or its folder is
    unreadable or incomplete (a crash outside hrrkit's atomic writes, a disk error), the newest
    complete ``checkpoints/epoch_*`` folder, with a warning; ``None`` when there is none."""
    import warnings

    pointer = run_dir / "last.json"
    candidates: list[Path] = []
    problem = None
    if pointer.is_file():
        try:
            named = run_dir / json.loads(pointer.read_text())["checkpoint"]
            candidates.append(named)
        except (OSError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = f"{pointer} is unreadable ({type(exc).__name__}: {exc})"
    candidates += sorted((p for p in (run_dir / "checkpoints").glob("epoch_*") if p.is_dir()), reverse=True)
    root = run_dir.resolve()
    for i, folder in enumerate(candidates):
        folder = folder.resolve()
        if root not in folder.parents:
            raise CheckpointError(f"{pointer}: names a checkpoint outside the run folder ({folder})")
        state = _complete_checkpoint(folder)
        if state is None:
            if i == 0 and pointer.is_file() and problem is None:
                problem = f"{pointer} names an incomplete checkpoint {folder}"
            continue
        if problem is not None:
            warnings.warn(f"{problem}; resuming from {folder} instead", RuntimeWarning, stacklevel=3)
        return folder, state
    if problem is not None:
        warnings.warn(f"{problem} and no complete checkpoint exists; starting afresh", RuntimeWarning, stacklevel=3)
    return None


def _clear_previous_run(run_dir: Path) -> None:
    """``resume=False``: forget an earlier run in ``run_dir`` so its checkpoints can neither be
    resumed from nor mixed with the new ones (its ``best/`` is overwritten by the new run's first epoch)."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    for name in ("last.json", "log.jsonl", "skipped_files.json"):
        (run_dir / name).unlink(missing_ok=True)


def _restore(folder: Path, model: nn.Module, optimizer, scheduler, scaler) -> None:
    payload, weights = read_detector_folder(folder)
    hint = ("the detector config changed since it was written: use `hrrkit train --restart` (or "
            "`fit(..., resume=False)`) or another output_dir")
    load_detector_state(model, weights, payload.get("packaged_weights") or {}, folder, hint)
    trainer_state = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(trainer_state["optimizer"])
    scheduler.load_state_dict(trainer_state["scheduler"])
    if trainer_state.get("scaler"):
        scaler.load_state_dict(trainer_state["scaler"])
    torch.set_rng_state(trainer_state["torch_rng"])


# ----------------------------------------------------------------------------- the loop


def fit(
    model: nn.Module,
    train_set: ImageDataset,
    val_set: ImageDataset | None,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    resume: bool = True,
    progress: bool = True,
    run_config: dict[str, Any] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_set``, validating on ``val_set`` each epoch.

    Args:
        model: a detector following the contract in the module docstring (not yet on ``device``).
        train_set, val_set: datasets of :class:`~hrrkit.data.dataset.ImageDataset` (``val_set``
            ``None`` keeps the last epoch as "best").
        config: the training settings.
        run_dir: the run folder (created; resumed from when it holds ``last.json`` and ``resume``).
        device: where to train. Under ``torchrun`` each process uses its ``LOCAL_RANK`` GPU on CUDA.
        run_config: the full config to record in ``run/config.json``.
        on_epoch_end: called with each epoch record (on the main process).

    Raises:
        NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint stays in place).
    """
    run_dir = Path(run_dir)
    device = torch.device(device)
    dist = _setup_distributed(device)
    try:
        return _fit(model, train_set, val_set, config, run_dir, device=device, dist=dist, resume=resume,
                    progress=progress, run_config=run_config, on_epoch_end=on_epoch_end)
    finally:
        if dist.initialised_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _fit(model, train_set, val_set, config: TrainConfig, run_dir: Path, *, device: torch.device, dist: _Dist,
         resume: bool, progress: bool, run_config, on_epoch_end) -> TrainResult:
    from tqdm.auto import tqdm

    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    seed_everything(config.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    # native-size items: their sizes come from file headers, read once for the whole run
    train_sizes = train_set.header_sizes()
    steps_per_epoch = len(_batch_sampler(train_sizes, config, dist=dist, epoch=0,
                                         groups=getattr(train_set, "pair_keys", None)))
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = max(steps_per_epoch * config.epochs, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")

    state: dict[str, Any] = {"epoch": -1, "step": 0, "best_ap": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": []}
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            _clear_previous_run(run_dir)
    dist.barrier()
    resumed = _load_last_checkpoint(run_dir) if resume else None
    if resumed is not None:
        folder, state = resumed
        _restore(folder, model, optimizer, scheduler, scaler)
        model.to(device)
    elif dist.main and run_config is not None:
        atomic_write_json(run_dir / "config.json", run_config)

    train_model: nn.Module = model
    if dist.world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    log_path = run_dir / "log.jsonl"
    skip_log = SkipLog()

    def log(record: dict[str, Any]) -> None:
        if dist.main:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    stopped_early = False
    start_epoch = state["epoch"] + 1
    if resumed is not None and dist.main:
        log({"event": "resume", "from_epoch": state["epoch"], "time": time.time()})
    for epoch in range(start_epoch, config.epochs):
        model.train()
        loader = _loader(train_set, train_sizes, config, dist=dist, epoch=epoch)
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
                   disable=not (progress and dist.main), leave=False)
        epoch_loss, seen = 0.0, 0
        for step_in_epoch, batch in enumerate(loader):
            if step_in_epoch >= steps_per_epoch:
                break
            skip_log.update(batch)
            # under DDP every rank must take part in every step's collectives: skip a step on all
            # ranks when any rank's batch was entirely unreadable
            if dist.any_flag(batch["images"] is None):
                continue
            images = batch["images"].to(device)
            labels = _labels_for(batch).to(device)
            with _autocast(device, config.amp):
                output = train_model(images)
            core = train_model.module if dist.world > 1 else train_model
            loss, parts = core.compute_loss(output, labels)
            if dist.any_flag(not bool(torch.isfinite(loss))):
                good = _load_last_checkpoint(run_dir) if dist.main else None
                kept = (f"the last good checkpoint {good[0]} (epoch {good[1]['epoch'] + 1}) is kept and "
                        "`hrrkit train` resumes from it" if good else "no epoch had finished, so no checkpoint exists")
                raise NonFiniteLossError(
                    f"training stopped: the loss is {loss.item()} (not finite) at epoch {epoch + 1}, step "
                    f"{state['step'] + 1} (parts: {parts}); {kept}. Lower train.lr, keep train.grad_clip > 0, "
                    "or set train.amp=off if half precision overflowed."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if hasattr(core, "after_optimizer_step"):
                core.after_optimizer_step(lr)
            state["step"] += 1
            epoch_loss += loss.item() * len(labels)
            seen += len(labels)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if state["step"] % config.log_every == 0:
                log({"event": "step", "epoch": epoch, "step": state["step"], "lr": lr, "loss": loss.item(), **parts})
        bar.close()

        # unreadable training files met by any rank are reported by rank 0
        skip_log.update(dist.gather_lists(skip_log.entries))
        record: dict[str, Any] = {"event": "epoch", "epoch": epoch, "step": state["step"],
                                  "train_loss": epoch_loss / max(seen, 1), "time": time.time()}
        improved = False
        if dist.main:
            if val_set is not None and len(val_set):
                pred = predict_dataset(model, val_set, batch_size=config.batch_size, device=device,
                                       num_workers=config.num_workers, progress=progress, desc="validate",
                                       skip_log=skip_log)
                ap = average_precision(pred["labels"], pred["scores"]) if len(pred["labels"]) else float("nan")
                record["val_ap"] = ap
                if math.isnan(ap):
                    # a validation set without both classes has no AP: keep the latest epoch as best
                    # (as without validation), and say so in the log
                    record["val_note"] = "validation AP undefined (one class only); the latest epoch is kept as best"
                    improved = math.isnan(state["best_ap"]) or state["best_epoch"] < 0
                else:
                    improved = math.isnan(state["best_ap"]) or ap > state["best_ap"]
            else:
                improved = True
            if improved:
                state["best_ap"] = record.get("val_ap", float("nan"))
                state["best_epoch"] = epoch
                state["bad_epochs"] = 0
                save_detector(model, run_dir / "best", extra={"epoch": epoch, "val_ap": record.get("val_ap")})
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch
            state["history"].append(record)
            _save_epoch_checkpoint(run_dir, model, optimizer, scheduler, scaler, state, config.keep_checkpoints)
            log(record)
            # one console line per epoch (log.jsonl counts epochs from 0, people from 1: both shown)
            val = record.get("val_ap")
            val_text = "" if val is None else (f", val AP {val:.4f}" if not math.isnan(val) else ", val AP n/a")
            print(f"epoch {epoch + 1}/{config.epochs} (log.jsonl epoch {epoch}): train loss "
                  f"{record['train_loss']:.4f}{val_text}{' (best so far)' if improved else ''}", flush=True)
            if skip_log:
                skip_log.write(run_dir / "skipped_files.json")
            if on_epoch_end is not None:
                on_epoch_end(record)
        stop = config.early_stopping_patience > 0 and state["bad_epochs"] >= config.early_stopping_patience
        stop = dist.broadcast_flag(stop)
        dist.barrier()
        if stop:
            stopped_early = True
            break
    return TrainResult(
        run_dir=run_dir, best_ap=state["best_ap"], best_epoch=state["best_epoch"],
        epochs_run=state["epoch"] + 1, stopped_early=stopped_early, history=state["history"],
        skipped=skip_log.entries,
    )
