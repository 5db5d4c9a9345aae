"""What the app shows for one image: the scoring row, the evidence overlay and the retrospection panel.

Everything here is plain Python (no Gradio), so the web page, the HTTP API and the tests share it:

* :func:`score_uploads` — score files with :func:`hrrkit.eval.predict.detect_files`, the function
  ``hrrkit detect`` uses (the same loader under the detector's pixel limit, the same ``predict``); an
  unreadable file becomes a row with the loader's message instead of an exception.
* :func:`evidence_figure` — the main scale's evidence map over the view the detector saw, with a
  colour bar and a caption that says what bright means.
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

    With ``with_maps``, each readable image is decoded again and ``detector.predict(...,
    with_maps=True)`` gives the evidence arrays the figures draw (``ImageResult.prediction``).
    Returns one :class:`ImageResult` per file, in order.
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
        detections = detect_files(detector, paths)
        by_path = {row["path"]: row for row in detections.rows}
        missing = dict(detections.missing)
        results: list[ImageResult] = []
        for (name, _), path in zip(files, paths):
            row = dict(by_path.get(str(path)) or {
                "score": None, "label": None, "threshold": detections.threshold, "scale_scores": None,
                "error": f"MissingFileError: {missing.get(str(path), 'the upload did not arrive')}"})
            row.pop("path", None)  # a temporary path means nothing to the person or program asking
            row = {"name": name, "verdict": row.get("label"), **row}
            image = None
            if row["error"] is None:
                try:
                    image = load_image(path, max_pixels=detector.config.input.max_pixels, name=name)
                    row.update(width=image.width, height=image.height)
                except ImageLoadError as exc:  # it was read a moment ago; say so rather than fail
                    row["error"] = f"{type(exc).__name__}: {exc.reason}"
            results.append(ImageResult(name, _to_jsonable(row), image=image))
    readable = [r for r in results if r.image is not None]
    if with_maps and readable:
        for r, pred in zip(readable, detector.predict([r.image for r in readable], with_maps=True)):
            r.prediction = pred
    return results


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
    """A PNG of the main scale's evidence map over the view the detector saw, with a colour bar, and
    its caption; ``None`` when the prediction has no maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = result.prediction.get("maps") or {}
    if not maps:
        return None
    scale = main_scale(result.prediction["scale_scores"]) if result.prediction.get("scale_scores") else next(iter(maps))
    scale = scale if scale in maps else next(iter(maps))
    evidence = np.asarray(maps[scale], dtype=np.float32)
    view, n_views = _view_at_main_scale(detector, result.image)
    background = _display(view)
    h, w = background.shape[:2]
    up = np.asarray(Image.fromarray(evidence).resize((w, h), Image.Resampling.BILINEAR))
    # inches: 3.4 wide, height by the aspect ratio within [1, 5] so a 5000×300 or 300×5000 image keeps
    # a readable figure and colour bar (imshow letterboxes inside it)
    fig, ax = plt.subplots(figsize=(3.4, min(max(3.4 * h / max(w, 1), 1.0), 5.0)))
    ax.imshow(background.mean(axis=2), cmap="gray", vmin=0, vmax=255)
    shown = ax.imshow(up, cmap="magma", alpha=0.55, vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(result.prediction.get("maps_unit") or "relative feature energy")
    policy = detector.config.input.eval_policy
    where = ("the whole image" if policy == "native" else
             f"the {detector.config.input.crop_size}-px {'centre crop' if policy == 'center_crop' else 'first tile'}")
    caption = result.prediction.get("maps_caption") or (
        f"Scale {scale}: where the backbone's features on the retrospection residual are strongest, over {where}"
        + (f" (averaged over {n_views} views)" if n_views > 1 else "")
        + ". Normalised per image: bright marks the strongest response in this image, not by itself a sign "
          "of generation; compare with the score.")
    return _figure_png(fig), caption


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
        label = retro.kind + (f", σ = {retro.blur_sigma:g} px" if retro.kind == "blur" else "")
        panels.append((f"reconstruction x̂ ({label})", _display(recon[0])))
        why = ("The blur stand-in removes fine detail, so the residual is the image's high-frequency content."
               if retro.kind == "blur" else
               "A diffusion retrospector tends to reconstruct generated images more faithfully (a darker residual).")
        caption = (f"Main scale{cropped}: the retrospector's reconstruction and the residual |x̃ − x̂| "
                   f"(mean over colour channels, in grey levels of 255 on a fixed 0–{RESIDUAL_DISPLAY_MAX} scale "
                   f"so images compare; the backbone sees the {retro.input}). {why}")
    fig, axes = plt.subplots(1, len(panels) + (residual is not None), figsize=(2.6 * (len(panels) + 1), 2.8),
                             squeeze=False)
    for ax, (title, pixels) in zip(axes[0], panels):
        ax.imshow(pixels)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    if residual is not None:
        ax = axes[0][-1]
        shown = ax.imshow(residual, cmap="viridis", vmin=0, vmax=RESIDUAL_DISPLAY_MAX)
        ax.set_title("residual |x̃ − x̂|", fontsize=9)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, extend="max").set_label("grey levels")
    fig.tight_layout()
    return _figure_png(fig), caption
