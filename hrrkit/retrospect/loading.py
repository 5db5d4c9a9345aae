"""Load diffusion components from local weights, with errors that say what was expected.

Accepted ``path`` forms:

* a **diffusers pipeline folder** (``model_index.json`` with ``unet/``, ``vae/``, ``scheduler/``
  subfolders; what ``DiffusionPipeline.save_pretrained`` writes and what the Hub's
  ``stable-diffusion-v1-5`` repository holds);
* a **diffusers model folder** (``config.json`` + ``diffusion_pytorch_model.safetensors``; what
  ``UNet2DModel.save_pretrained`` writes);
* a **single ``.safetensors`` file**, either
  - a diffusers-format state dict of one model, with its ``config.json`` passed as ``config``
    (a file or a folder) or lying beside it as ``<name>.json`` or ``config.json``; or
  - an original-format checkpoint (CompVis/Stability ``model.diffusion_model.*`` keys), converted
    by diffusers' ``from_single_file`` using the component configs from ``config`` (a local
    diffusers pipeline folder, e.g. a config-only copy of ``stable-diffusion-v1-5``) or
    ``original_config`` (the original ``v1-inference.yaml``).

Pickled checkpoints (``.ckpt``/``.pt``/``.bin`` given as a single file) are refused: converting
them to safetensors once is safer than unpickling on every run. Nothing is fetched from the
Hugging Face Hub unless ``allow_download=True`` (then ``path`` may also be a Hub repo id).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from torch import nn

_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json",
    "diffusion_pytorch_model.fp16.safetensors",
)
_ORIGINAL_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
_ADM_KEYS = ("input_blocks.0.0.weight", "time_embed.0.weight")
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class WeightsLoadError(RuntimeError):
    """Weights could not be loaded; the message says what was found and what was expected."""


class WeightsNotFoundError(WeightsLoadError, FileNotFoundError):
    """The given path does not exist or holds no weights."""


def _component_dir(path: Path, component: str, expected_class: str) -> Path:
    """The folder holding ``component`` (``unet``/``vae``) in a pipeline or model folder."""
    sub = path / component
    if (path / "model_index.json").is_file() or sub.is_dir():
        if not (sub / "config.json").is_file():
            raise WeightsNotFoundError(
                f"{path} looks like a diffusers pipeline folder but has no {component}/config.json; "
                f"expected {sub}/config.json and {sub}/diffusion_pytorch_model.safetensors"
            )
        return sub
    if (path / "config.json").is_file():
        return path
    raise WeightsNotFoundError(
        f"{path} is neither a diffusers pipeline folder (model_index.json, {component}/, ...) nor a "
        f"diffusers model folder (config.json + diffusion_pytorch_model.safetensors) for a {expected_class}"
    )


def _check_class(directory: Path, expected: tuple[str, ...]) -> None:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsLoadError(f"{directory / 'config.json'} is not readable JSON: {err}") from err
    name = config.get("_class_name")
    if name is not None and name not in expected:
        raise WeightsLoadError(f"{directory} holds a {name}, but a {' or '.join(expected)} is needed here")


def _load_dir(cls: type, directory: Path, allow_download: bool) -> nn.Module:
    _check_class(directory, (cls.__name__,))
    if not any((directory / name).is_file() for name in _WEIGHT_NAMES):
        raise WeightsNotFoundError(
            f"{directory} has a config.json but no weights; expected one of {', '.join(_WEIGHT_NAMES[:3])}"
        )
    kwargs: dict[str, Any] = {}
    if importlib.util.find_spec("accelerate") is None:
        kwargs["low_cpu_mem_usage"] = False  # say so instead of letting diffusers warn on every load
    try:
        return cls.from_pretrained(str(directory), local_files_only=not allow_download, **kwargs)
    except Exception as err:  # diffusers raises many types; name the folder and the class
        raise WeightsLoadError(f"could not load a {cls.__name__} from {directory}: {err}") from err


def _find_config(file: Path, config: str | Path | None, component: str) -> Path | None:
    candidates: list[Path] = []
    if config is not None:
        c = Path(config)
        candidates = [c] if c.is_file() else [c / component / "config.json", c / "config.json"]
    else:
        candidates = [file.with_suffix(".json"), file.parent / "config.json"]
    return next((c for c in candidates if c.is_file()), None)


def _safetensors_keys(file: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return list(handle.keys())
    except Exception as err:
        raise WeightsLoadError(f"{file} is not a readable safetensors file (truncated or corrupt?): {err}") from err


def _load_single_file(
    cls: type,
    file: Path,
    component: str,
    config: str | Path | None,
    original_config: str | Path | None,
    allow_download: bool,
) -> nn.Module:
    if file.suffix in _PICKLE_SUFFIXES:
        raise WeightsLoadError(
            f"{file}: pickled checkpoints are not loaded (unpickling runs code). Convert it once to "
            "safetensors (or to a diffusers folder with diffusers' conversion scripts) and pass that"
        )
    if file.suffix != ".safetensors":
        raise WeightsLoadError(f"{file}: expected a .safetensors file or a diffusers folder")
    keys = _safetensors_keys(file)
    if any(k in keys for k in _ADM_KEYS) and not any(k.startswith(_ORIGINAL_PREFIXES) for k in keys):
        raise WeightsLoadError(
            f"{file} looks like an OpenAI guided-diffusion (ADM) checkpoint; convert it to a diffusers "
            "UNet2DModel folder first (see docs/retrospection.md, 'ADM weights')"
        )
    if any(k.startswith(_ORIGINAL_PREFIXES) for k in keys):
        if not hasattr(cls, "from_single_file"):
            raise WeightsLoadError(f"{cls.__name__} cannot be read from an original-format single file")
        if config is None and original_config is None and not allow_download:
            raise WeightsLoadError(
                f"{file} is an original-format (CompVis/Stability) checkpoint. Converting it needs the "
                "model's configs: pass config=<local diffusers pipeline folder with unet/ and vae/ "
                "config.json> or original_config=<v1-inference.yaml> (or allow_download=True to fetch "
                "them from the Hub)"
            )
        kwargs: dict[str, Any] = {"local_files_only": not allow_download}
        if original_config is not None:
            kwargs["original_config"] = str(original_config)
        elif config is not None:
            kwargs["config"] = str(config)
            if (Path(config) / component).is_dir():
                kwargs["subfolder"] = component
        try:
            model = cls.from_single_file(str(file), **kwargs)
        except Exception as err:
            raise WeightsLoadError(f"could not convert {file} into a {cls.__name__}: {err}") from err
        return model.eval()
    # a diffusers-format state dict of one model (optionally with a "<component>." prefix)
    config_path = _find_config(file, config, component)
    if config_path is None:
        raise WeightsNotFoundError(
            f"{file} holds a diffusers-format state dict but its config.json was not found: pass "
            f"config=<config.json or folder> or put {file.with_suffix('.json').name} / config.json beside it"
        )
    from safetensors.torch import load_file

    try:
        model_config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsLoadError(f"{config_path} is not readable JSON: {err}") from err
    if model_config.get("_class_name") not in (None, cls.__name__):
        raise WeightsLoadError(f"{config_path} describes a {model_config['_class_name']}, not a {cls.__name__}")
    state = load_file(str(file))
    prefix = f"{component}."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    model = cls.from_config(model_config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsLoadError(
            f"{file} does not match the {cls.__name__} in {config_path}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    return model.eval()


def load_model(
    cls: type,
    path: str | Path,
    component: str,
    *,
    config: str | Path | None = None,
    original_config: str | Path | None = None,
    allow_download: bool = False,
) -> nn.Module:
    """Load a diffusers model class ``cls`` (e.g. ``UNet2DModel``) from ``path`` (see module doc).

    Raises:
        WeightsNotFoundError: the path does not exist or holds no weights/config.
        WeightsLoadError: the weights exist but are of the wrong kind or cannot be read.
    """
    if isinstance(path, str) and path.startswith("hrrkit:"):
        raise WeightsLoadError(
            f"{path!r} names weights that ship inside hrrkit; they are a pixel UNet2DModel for "
            f"retrospector.kind=pixel_ddim (PixelDDIMRetrospector.from_pretrained), not a {cls.__name__} "
            f"for the {component!r} component"
        )
    p = Path(path).expanduser()
    if not p.exists():
        if allow_download and isinstance(path, str) and "/" in path and not path.startswith((".", "/")):
            try:  # a Hub repo id, fetched only because the caller asked for it
                return cls.from_pretrained(path, subfolder=component)
            except Exception as err:
                raise WeightsLoadError(f"could not fetch {cls.__name__} from Hub repo {path!r}: {err}") from err
        raise WeightsNotFoundError(
            f"model path {p} does not exist; expected a diffusers folder or a .safetensors file "
            "(hrrkit never downloads weights unless asked: allow_download=True / --allow-download)"
        )
    if p.is_file():
        return _load_single_file(cls, p, component, config, original_config, allow_download)
    return _load_dir(cls, _component_dir(p, component, cls.__name__), allow_download)


def load_pixel_unet(path: str | Path, *, config: str | Path | None = None, allow_download: bool = False) -> nn.Module:
    """A pixel-space ``UNet2DModel`` (DIRE / ADM / DDPM)."""
    from diffusers import UNet2DModel

    return load_model(UNet2DModel, path, "unet", config=config, allow_download=allow_download)


def load_vae(
    path: str | Path,
    *,
    config: str | Path | None = None,
    original_config: str | Path | None = None,
    allow_download: bool = False,
) -> nn.Module:
    """An ``AutoencoderKL`` (the ``vae/`` of a latent diffusion pipeline)."""
    from diffusers import AutoencoderKL

    return load_model(
        AutoencoderKL, path, "vae", config=config, original_config=original_config, allow_download=allow_download
    )


def load_latent_components(
    path: str | Path,
    *,
    config: str | Path | None = None,
    original_config: str | Path | None = None,
    allow_download: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """``(AutoencoderKL, UNet2DConditionModel)`` of a latent diffusion model."""
    from diffusers import UNet2DConditionModel

    vae = load_vae(path, config=config, original_config=original_config, allow_download=allow_download)
    unet = load_model(
        UNet2DConditionModel,
        path,
        "unet",
        config=config,
        original_config=original_config,
        allow_download=allow_download,
    )
    return vae, unet


def load_scheduler_config(path: str | Path) -> dict[str, Any] | None:
    """The scheduler config of a pipeline folder (``scheduler/scheduler_config.json``), or a
    ``scheduler_config.json`` beside a model folder/file; ``None`` if there is none (the
    retrospector then uses its documented default schedule)."""
    p = Path(path).expanduser()
    base = p.parent if p.is_file() else p
    for candidate in (base / "scheduler" / "scheduler_config.json", base / "scheduler_config.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError as err:
                raise WeightsLoadError(f"{candidate} is not valid JSON: {err}") from err
    return None
