"""Hub-style loading: ``HRRDetector.from_pretrained`` / ``save_pretrained`` / ``push_to_hub``.

A *hub folder* is a detector folder (:mod:`hrrkit.models.checkpoint`: ``model.safetensors`` +
``config.json``) plus a generated model card ``README.md`` that says what the detector was trained
on, its validation (and test) metrics, its decision threshold, its retrospector and its licence::

    det = HRRDetector.from_pretrained("runs/hrr/best")        # a local folder: always offline
    det = HRRDetector.from_pretrained("someone/hrr-genimage")  # a hub repo, through huggingface_hub's cache
    det.save_pretrained("exported/hrr")                       # weights + config.json + README.md
    det.push_to_hub("me/hrr-genimage")                         # the same three files, uploaded

A name that is an existing folder is loaded from disk and nothing touches the network. ``hrrkit:<name>``
names a detector that ships inside the hrrkit package (:data:`SHIPPED_DIR`; ``hrrkit:default`` is the
detector ``hrrkit detect`` uses when no ``--model`` is given): always offline. Any other name
is a hub repo id resolved by :func:`huggingface_hub.snapshot_download` (only the three files above),
which keeps its cache under ``HF_HUB_CACHE`` / ``HF_HOME`` and serves it without the network when
``HF_HUB_OFFLINE=1`` (read when the call is made) or ``local_files_only=True``.

The card's facts (:func:`detector_card`) come from the folder itself: ``config.json`` (threshold,
calibration, retrospector, best validation AP) and, for a ``best/`` folder inside a ``hrrkit train``
run, the run's ``config.json`` (the training data) and ``test_report/report.json`` (test metrics).
``save_pretrained`` stores those facts in ``config.json`` (``extra.card``), so they travel with the
weights to the hub and back.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from hrrkit.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, save_detector
from hrrkit.utils.atomic import atomic_write_text

MODEL_CARD_FILE = "README.md"
#: The files of a hub folder: the only ones downloaded or uploaded.
HUB_FILES: tuple[str, ...] = (WEIGHTS_FILE, CONFIG_FILE, MODEL_CARD_FILE)
#: hrrkit's own licence; trained weights inherit the licence of their training data, so pass the
#: right one to ``save_pretrained`` / ``push_to_hub`` for weights trained on restricted data.
DEFAULT_LICENSE = "apache-2.0"
_TRUE = {"1", "on", "yes", "true"}


#: Detectors shipped inside the package, one folder each (``hrrkit:<folder name>``).
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SHIPPED_PREFIX = "hrrkit:"
#: The detector used when none is named (``hrrkit detect``, ``hrrkit app``).
DEFAULT_DETECTOR = "hrrkit:default"


class HubError(CheckpointError):
    """A hub name could not be resolved (not cached while offline, no such repo, bad repo id) or a
    folder cannot be published; the message says which and what to do."""


def _external_weights(path: str | None) -> bool:
    """A retrospector ``path`` whose weights are neither in the hub folder nor shipped with hrrkit
    (``hrrkit:<name>`` names weights inside the hrrkit package, which every install has)."""
    return bool(path) and not str(path).startswith("hrrkit:")


def shipped_detectors() -> list[str]:
    """The ``hrrkit:<name>`` detectors this install ships (folders with a config and weights)."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(SHIPPED_PREFIX + p.name for p in SHIPPED_DIR.iterdir()
                  if (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file())


def shipped_folder(name: str) -> Path:
    """The folder of the shipped detector ``hrrkit:<name>``; :class:`HubError` listing the shipped ones."""
    folder = SHIPPED_DIR / name.removeprefix(SHIPPED_PREFIX)
    if name.removeprefix(SHIPPED_PREFIX) and (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
        return folder
    raise HubError(f"{name}: no such shipped detector; this hrrkit ships {shipped_detectors() or 'none'}")


def _offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; read it at call time as well so that a
    # process that sets it later (a test, a notebook) is honoured too
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _looks_like_a_path(name: str) -> bool:
    """A name that can only be meant as a path (a repo id is ``name`` or ``owner/name``)."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
            or Path(name).exists())


def resolve_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                       token: str | bool | None = None) -> Path:
    """The local folder of ``name_or_path``: the folder itself, or the hub repo's cached snapshot
    (downloaded first unless offline). Raises :class:`HubError` naming the repo and the remedy."""
    name = str(name_or_path)
    if name.startswith(SHIPPED_PREFIX):
        return shipped_folder(name)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if _looks_like_a_path(name):
        raise HubError(f"{name}: no such detector folder (a folder with {CONFIG_FILE} and {WEIGHTS_FILE}, "
                       "or a hub repo id 'owner/name')")
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (  # (.utils re-exports the errors in every release since 0.2x)
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = local_files_only or _offline()
    try:
        folder = snapshot_download(repo_id=name, revision=revision, cache_dir=cache_dir, allow_patterns=list(HUB_FILES),
                                   local_files_only=offline, token=token, library_name="hrrkit")
    except HFValidationError as exc:
        raise HubError(f"{name}: neither a detector folder nor a valid hub repo id ({exc})") from None
    except LocalEntryNotFoundError:
        where = cache_dir or os.environ.get("HF_HUB_CACHE") or "the huggingface_hub cache (HF_HOME/hub)"
        why = "HF_HUB_OFFLINE=1 is set" if _offline() else ("local_files_only=True" if local_files_only
                                                            else "the hub could not be reached")
        raise HubError(f"{name}: not found in {where} and {why}; download it once with network access "
                       f"(HRRDetector.from_pretrained({name!r})) or pass a local detector folder") from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise HubError(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return Path(folder)


# ----------------------------------------------------------------------------- the card's facts


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _metrics_subset(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if not row:
        return None
    keys = ("n_real", "n_fake", "ap", "roc_auc", "acc", "real_acc", "fake_acc", "balanced_acc", "tpr_at_5pct_fpr")
    return {k: row[k] for k in keys if k in row}


def _unsure_band(config: dict[str, Any]) -> list[float] | None:
    # the calibrated abstain band [low, high] (DetectorConfig.unsure), or None
    band = config.get("unsure")
    return [float(band[0]), float(band[1])] if band else None


def detector_card(folder: str | os.PathLike) -> dict[str, Any]:
    """What a person should know about the detector in ``folder``, as a JSON-friendly dict.

    Keys: ``name``, ``threshold``, ``band`` (the unsure band, or ``None``), ``calibration``,
    ``retrospector`` (kind, path, input), ``backbone``, ``scales``, ``input`` (evaluation policy, crop
    size, pixel limit), ``training_data`` (``None`` when unknown), ``validation`` (best epoch and AP),
    ``test`` (split and metrics, or ``None``), ``versions``, ``saved_at``, ``license`` (``None`` unless
    recorded by ``save_pretrained``), ``source`` (the folder).
    """
    folder = Path(folder)
    payload = _read_json(folder / CONFIG_FILE)
    if payload is None or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{folder / CONFIG_FILE}: missing or not a hrrkit detector config")
    config = payload["config"]
    extra = payload.get("extra") or {}
    stored = dict(extra.get("card") or {})
    retro = config.get("retrospector", {})
    card: dict[str, Any] = {
        "name": config.get("name"),
        "threshold": config.get("threshold"),
        "band": _unsure_band(config),
        "calibration": config.get("calibration"),
        "retrospector": {k: retro.get(k) for k in ("kind", "path", "input", "blur_sigma")},
        "backbone": config.get("backbone", {}).get("name"),
        "scales": config.get("rescale", {}).get("scales") if config.get("rescale", {}).get("enabled", True) else [1.0],
        "input": {k: config.get("input", {}).get(k) for k in ("eval_policy", "crop_size", "max_pixels")},
        "training_data": stored.get("training_data"),
        "validation": stored.get("validation") or {"best_epoch": extra.get("epoch"), "ap": extra.get("val_ap")},
        "test": stored.get("test"),
        "versions": payload.get("versions"),
        "saved_at": payload.get("saved_at"),
        "license": stored.get("license"),
        "source": str(folder),
    }
    run = _read_json(folder.parent / CONFIG_FILE)
    if card["training_data"] is None and run and isinstance(run.get("data"), dict) and "detector" in run:
        data, train = run["data"], run.get("train") or {}
        card["training_data"] = {
            "root": data.get("root"), "layout": data.get("layout"), "train_split": data.get("train_split"),
            "val_split": data.get("val_split"), "val_fraction": data.get("val_fraction"),
            "train_generators": data.get("train_generators"), "epochs": train.get("epochs"),
        }
    report = _read_json(folder.parent / "test_report" / "report.json")
    if card["test"] is None and report and run:
        card["test"] = {"split": (run.get("data") or {}).get("test_split"), "n_images": report.get("n_images"),
                        "threshold": report.get("threshold"), "overall": _metrics_subset(report.get("overall"))}
    return card


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_model_card(card: dict[str, Any]) -> str:
    """The ``README.md`` of a hub folder: YAML front matter (licence, library, tags) and the card's
    facts in words and tables. Unknown facts are written as unknown, never guessed."""
    lic = card.get("license") or DEFAULT_LICENSE
    name = card.get("name") or "hrr"
    lines = ["---", f"license: {lic}", "library_name: hrrkit", "pipeline_tag: image-classification",
             "tags:", "  - hrrkit", "  - ai-generated-image-detection", "  - image-forensics", "---", "",
             f"# hrrkit detector `{name}`", "",
             "A generated-image detector (HRR: Hierarchical Retrospection Refinement, arXiv 2502.17862) saved "
             "by [hrrkit](https://github.com/hrrkit/hrrkit). Load it with:", "",
             "```python", "from hrrkit.models import HRRDetector", "",
             "detector = HRRDetector.from_pretrained(\"<this repo id or folder>\")",
             "print(detector.predict([\"photo.jpg\"]))", "```", "",
             "or run `hrrkit detect IMAGES --model <folder>` / `hrrkit app --model <folder>`.", "",
             "## Decision", ""]
    lines.append(f"- **threshold**: {_fmt(card.get('threshold'))} (an image is called *generated* when its score "
                 "— the probability of generated — is at least this)")
    if card.get("band"):
        lines.append(f"- **unsure band**: {_fmt(card['band'])} (scores inside it are answered *unsure*)")
    cal = card.get("calibration")
    lines.append(f"- **calibration**: {json.dumps(cal) if cal else 'none (the threshold is the training default)'}")
    retro = card.get("retrospector") or {}
    lines += ["", "## Model", "",
              f"- **retrospector**: `{_fmt(retro.get('kind'))}`"
              + (f" from `{retro['path']}`" + (" (its weights are **not** in this folder; they must exist at that path)"
                                                 if _external_weights(retro["path"]) else " (shipped with hrrkit)")
                 if retro.get("path") else "")
              + f"; the backbone sees the {_fmt(retro.get('input'))}",
              f"- **backbone**: `{_fmt(card.get('backbone'))}`; scales {_fmt(card.get('scales'))}",
              f"- **input**: evaluation policy `{_fmt((card.get('input') or {}).get('eval_policy'))}`, crop "
              f"{_fmt((card.get('input') or {}).get('crop_size'))} px"]
    lines += ["", "## Training data", ""]
    data = card.get("training_data")
    if data:
        lines += [f"- **{k}**: {_fmt(v)}" for k, v in data.items()]
    else:
        lines.append("Unknown: this folder was not saved from a `hrrkit train` run and no training data was recorded.")
    lines += ["", "## Metrics", ""]
    val = card.get("validation") or {}
    lines.append(f"- **validation AP** (best epoch {_fmt(val.get('best_epoch'))}): {_fmt(val.get('ap'))}")
    test = card.get("test")
    if test and test.get("overall"):
        lines += ["", f"Test split `{_fmt(test.get('split'))}` ({_fmt(test.get('n_images'))} images, threshold "
                  f"{_fmt(test.get('threshold'))}):", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in test["overall"].items()]
    else:
        lines.append("- **test metrics**: none recorded")
    lines += ["", "Metrics on one data set say little about images from other generators, sizes or "
              "compressions; evaluate on your own data with `hrrkit eval`.", "",
              "## Licence", "", f"`{lic}`. Weights trained on a data set inherit that data set's terms.", "",
              "## Versions", "", f"Saved {_fmt(card.get('saved_at'))} with {_fmt(card.get('versions'))}.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the methods


def _external_retrospector(model: Any) -> bool:
    """The detector's retrospector loads weights from a path outside hrrkit (``hrrkit:<name>`` ships inside)."""
    return _external_weights(model.config.retrospector.path)


def save_pretrained(model: Any, folder: str | os.PathLike, *, license: str | None = None,
                    card: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a hub folder (weights, ``config.json`` with the card's facts, ``README.md``).

    ``card`` overrides the facts the model carries (``model.card``, set by ``from_pretrained``);
    ``license`` is written into the card (default :data:`DEFAULT_LICENSE`). Returns the folder."""
    facts = dict(card if card is not None else getattr(model, "card", None) or {})
    facts["license"] = license or facts.get("license") or DEFAULT_LICENSE
    if _external_retrospector(model):
        warnings.warn(f"save_pretrained: the retrospector weights ({model.config.retrospector.path}) are not copied "
                      "into the folder; loading it elsewhere needs them at that path", stacklevel=3)
    stored = {k: facts.get(k) for k in ("training_data", "validation", "test", "license")}
    folder = save_detector(model, folder, extra={"card": stored})
    written = detector_card(folder)
    atomic_write_text(folder / MODEL_CARD_FILE, render_model_card(written))
    model.card = written
    return folder


def from_pretrained(cls: type, name_or_path: str | os.PathLike, *, device: Any = "cpu", revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                    token: str | bool | None = None) -> Any:
    """Load a detector from a local folder or a hub repo id (see the module docstring); the result
    carries ``card`` (:func:`detector_card`) and ``source`` (the folder it was read from)."""
    from hrrkit.models.detector import load_detector

    folder = resolve_pretrained(name_or_path, revision=revision, cache_dir=cache_dir,
                                local_files_only=local_files_only, token=token)
    model = load_detector(folder, device=device)
    if not isinstance(model, cls):
        raise TypeError(f"{folder}: loads as {type(model).__name__}, not {cls.__name__}")
    model.card = detector_card(folder)
    model.source = str(folder)
    return model


def push_to_hub(model: Any, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                commit_message: str = "Upload hrrkit detector", license: str | None = None,
                allow_external_retrospector: bool = False, api: Any = None) -> Any:
    """Create ``repo_id`` (if needed) and upload the hub folder of ``model``: exactly
    :data:`HUB_FILES`, written to a temporary folder first. Refuses a model whose retrospector
    weights live outside the folder (nobody else could load it) unless ``allow_external_retrospector``.
    Returns huggingface_hub's ``CommitInfo``."""
    if _external_retrospector(model) and not allow_external_retrospector:
        raise HubError(f"push_to_hub({repo_id!r}): the retrospector loads weights from the local path "
                       f"{model.config.retrospector.path!r}, which is not uploaded; publish those weights and point "
                       "detector.retrospector.path at them, or pass allow_external_retrospector=True")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hrrkit-push-") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            save_pretrained(model, tmp, license=license)
        api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model", commit_message=commit_message,
                                 allow_patterns=list(HUB_FILES))


class HubMixin:
    """Adds :meth:`from_pretrained`, :meth:`save_pretrained` and :meth:`push_to_hub` to a detector
    class (``HRRDetector``); the functions of this module do the work."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        """A detector from a local folder or hub repo id; keywords: ``device``, ``revision``,
        ``cache_dir``, ``local_files_only``, ``token`` (see :func:`from_pretrained`)."""
        return from_pretrained(cls, name_or_path, **kwargs)

    def save_pretrained(self, folder: str | os.PathLike, **kwargs: Any) -> Path:
        """Write weights, ``config.json`` and the model card ``README.md`` into ``folder``."""
        return save_pretrained(self, folder, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any):
        """Upload the hub folder to ``repo_id`` (see :func:`push_to_hub`)."""
        return push_to_hub(self, repo_id, **kwargs)
