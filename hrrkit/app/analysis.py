"""What the app shows for one image: the scoring row, the evidence overlay and the retrospection panel.

Everything here is plain Python (no Gradio), so the web page, the HTTP API and the tests share it:

* :func:`score_uploads` — score files with :func:`hrrkit.eval.predict.detect_files`, the function
  ``hrrkit detect`` uses (the same loader under the detector's pixel limit, the same ``predict``); an
  unreadable file becomes a row with the loader's message instead of an exception.
* :func:`evidence_figure` — the evidence maps (contribution to the logit per location, every scale)
  over the image, with a colour bar and a caption: the figure ``hrrkit detect --maps`` writes.
* :func:`retrospection_figure` — the line-enhanced input, the retrospector's reconstruction and the
  residual the backbone sees, at the main scale.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hrrkit.app.limits import MAX_IMAGES_PER_REQUEST, PANEL_MAX_SIDE

#: The residual panel's colour scale, in grey levels of 255: fixed, so panels of different images compare.
RESIDUAL_DISPLAY_MAX = 64


@dataclass
class ImageResult:
    """One uploaded file's outcome. ``row`` is the JSON the API returns (the ``hrrkit detect`` row
    plus ``name`` and ``verdict``); ``image`` the decoded RGB image (``None`` when unreadable)."""

    name: str
    row: dict[str, Any]
    image: Image.Image | None = None
    prediction: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.row.get("error") is None


def main_scale(scale_scores: dict[str, float]) -> str:
    """The scale shown in the single-scale panels: native size (``"1"``) when present, else the middle one."""
    keys = list(scale_scores)
    return "1" if "1" in keys else keys[len(keys) // 2]


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.astype(float).round(5).tolist()
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _safe_name(name: str) -> str:
    """A file name (no folders, no control characters) for an upload's bytes in the request's temp folder."""
    base = os.path.basename(name.replace("\\", "/")) or "upload"
    return "".join(c if c.isprintable() and c not in '<>:"|?*' else "_" for c in base)[:200]


def score_uploads(detector: Any, files: Sequence[tuple[str, str | os.PathLike | bytes]], *,
                  with_maps: bool = True) -> list[ImageResult]:
    """Score ``files`` (``(display name, path or bytes)`` pairs) with ``detector``.

    The rows come from :func:`hrrkit.eval.predict.detect_files`, the function ``hrrkit detect``
    scores with (the same loader under the detector's pixel limit, the same batching and
    ``predict``), so a score here equals the CLI's for the same file. Bytes are written to a
    temporary folder for the call and removed after it. A file the loader refuses becomes a row with
    ``error`` = ``"<ErrorClass>: <reason>"`` and ``score``/``verdict`` ``None``. ``verdict`` is the
    row's label (``real``/``generated``, or ``unsure`` inside a calibrated band).

    With ``with_maps``, ``detect_files`` also writes its evidence figure and arrays (``--maps``) into
    the temporary folder, in the same forward pass; they are read back into
    ``ImageResult.prediction`` (``evidence_png`` bytes, ``maps`` ``{scale: (h, w) float32}``,
    ``canvas``) before the folder is removed. Returns one :class:`ImageResult` per file, in order.
    """
    from hrrkit.data.io import ImageLoadError, load_image
    from hrrkit.eval.predict import detect_files

    if len(files) > MAX_IMAGES_PER_REQUEST:
        raise ValueError(f"{len(files)} files in one request; the limit is {MAX_IMAGES_PER_REQUEST}")
    with tempfile.TemporaryDirectory(prefix="hrrkit-app-") as tmp:
        paths: list[Path] = []
        for i, (name, source) in enumerate(files):
            if isinstance(source, (bytes, bytearray)):
                path = Path(tmp) / str(i) / _safe_name(name)
                path.parent.mkdir()
                path.write_bytes(source)
            else:
                path = Path(source)
            paths.append(path)
        maps_dir = Path(tmp) / "maps" if with_maps else None
        detections = detect_files(detector, paths, maps_dir=maps_dir)
        by_path = {row["path"]: row for row in detections.rows}
        missing = dict(detections.missing)
        results: list[ImageResult] = []
        for (name, _), path in zip(files, paths):
            row = dict(by_path.get(str(path)) or {
                "score": None, "label": None, "threshold": detections.threshold, "scale_scores": None,
                "error": f"MissingFileError: {missing.get(str(path), 'the upload did not arrive')}"})
            row.pop("path", None)  # a temporary path means nothing to the person or program asking
            written = row.pop("maps", None) or []
            row = {"name": name, "verdict": row.get("label"), **row}
            prediction = _read_evidence(written)
            image = None
            if row["error"] is None:
                try:
                    image = load_image(path, max_pixels=detector.config.input.max_pixels, name=name)
                    row.update(width=image.width, height=image.height)
                except ImageLoadError as exc:  # it was read a moment ago; say so rather than fail
                    row["error"] = f"{type(exc).__name__}: {exc.reason}"
            results.append(ImageResult(name, _to_jsonable(row), image=image, prediction=prediction))
    return results


def _read_evidence(written: Sequence[str]) -> dict[str, Any]:
    """The evidence ``detect_files`` wrote for one image (its ``.png`` figure and ``.npz`` arrays)."""
    out: dict[str, Any] = {}
    for path in map(Path, written):
        if path.suffix == ".png":
            out["evidence_png"] = path.read_bytes()
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                out["maps"] = {k[len("map_"):]: arrays[k] for k in arrays.files if k.startswith("map_")}
                out["canvas"] = arrays["canvas"]
    return out


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _view_at_main_scale(detector: Any, image: Image.Image) -> tuple[torch.Tensor, int]:
    """The first (3, h, w) view the detector's evaluation policy cuts from ``image`` (in [-1, 1]) and
    the number of views (crops/tiles) it cuts."""
    views = detector.preprocess(image)
    return views[0], int(views.shape[0])


def _display(t: torch.Tensor) -> np.ndarray:
    """(3, h, w) in [-1, 1] → (h, w, 3) uint8."""
    return ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def evidence_figure(detector: Any, result: ImageResult) -> tuple[bytes, str] | None:
    """The evidence figure ``detect_files`` wrote for this image (``hrrkit detect --maps``: the image,
    one overlay per scale, a colour bar, a caption) and an HTML caption saying which region the maps
    cover; ``None`` when no maps were asked for."""
    from hrrkit.eval.evidence import MAPS_UNIT

    png = result.prediction.get("evidence_png")
    if png is None:
        return None
    inp = detector.config.input
    where = {"native": "the whole image", "center_crop": f"the central {inp.crop_size}-px crop",
             "tiles": f"the {inp.crop_size}-px tiles (placed where they were cut)"}.get(inp.eval_policy,
                                                                                  f"the {inp.eval_policy} view")
    caption = (f"The maps cover {where}, the pixels the detector scored. Colour bar: {MAPS_UNIT}; one scale "
               "for all panels of this image. Summed over locations and scales they give, to first order, the "
               "part of the logit the backbone features carry.")
    return png, caption


def retrospection_figure(detector: Any, result: ImageResult) -> tuple[bytes, str]:
    """A PNG of the line-enhanced view x̃, the retrospector's reconstruction x̂ and the residual
    |x̃ − x̂| (grey levels, colour bar) at the main scale, and its caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    msr = detector.msr
    view, _ = _view_at_main_scale(detector, result.image)
    cropped = ""
    if max(view.shape[1:]) > PANEL_MAX_SIDE:
        top, left = (view.shape[1] - min(view.shape[1], PANEL_MAX_SIDE)) // 2, (view.shape[2] - min(view.shape[2], PANEL_MAX_SIDE)) // 2
        view = view[:, top: top + PANEL_MAX_SIDE, left: left + PANEL_MAX_SIDE]
        cropped = f" (central {view.shape[1]}×{view.shape[2]} px shown)"
    device = next(detector.parameters()).device
    with torch.no_grad():
        x = view[None].to(device)
        enhanced = msr.line_enhancement(x) if msr.line_enhancement is not None else x
        recon = msr.retrospector(enhanced) if msr.retrospector is not None else None
    retro = detector.config.retrospector
    panels = [("input x̃" + (" (line-enhanced)" if msr.line_enhancement is not None else ""), _display(enhanced[0]))]
    if recon is None:
        caption = "This detector has no retrospector (kind 'none'): the backbone sees the image itself."
        residual = None
    else:
        residual = (enhanced - recon).abs()[0].mean(0).cpu().numpy() * 127.5  # grey levels of 255
        label = retro.kind + (f", σ = {retro.blur_sigma:g} px" if retro.kind == "blur" else
                              f", {Path(retro.path).name}" if retro.path else "")
        panels.append((f"reconstruction x̂ ({label})", _display(recon[0])))
        why = ("The blur stand-in removes fine detail, so the residual is the image's high-frequency content."
               if retro.kind == "blur" else
               "A diffusion retrospector tends to reconstruct generated images more faithfully (a darker residual).")
        caption = (f"Main scale{cropped}: the retrospector's reconstruction and the residual |x̃ − x̂| "
                   f"(mean over colour channels, in grey levels of 255 on a fixed 0–{RESIDUAL_DISPLAY_MAX} square-root "
                   f"scale so images compare; the backbone sees the {retro.input}). {why}")
    fig, axes = plt.subplots(1, len(panels) + (residual is not None), figsize=(2.6 * (len(panels) + 1), 2.8),
                             squeeze=False)
    for ax, (title, pixels) in zip(axes[0], panels):
        ax.imshow(pixels)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    if residual is not None:
        ax = axes[0][-1]
        # fixed scale (images compare), square-root colour steps: a diffusion retrospector's residual of a
        # few grey levels stays visible next to a blur's tens
        from matplotlib.colors import PowerNorm

        shown = ax.imshow(residual, cmap="viridis", norm=PowerNorm(gamma=0.5, vmin=0, vmax=RESIDUAL_DISPLAY_MAX))
        ax.set_title("residual |x̃ − x̂|", fontsize=9)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, extend="max").set_label("grey levels")
    fig.tight_layout()
    return _figure_png(fig), caption
