"""Evidence figures: the contribution maps of :mod:`hrrkit.models.evidence` drawn over the image,
with a colour bar and a caption, plus the raw arrays for programs (``.npz``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAPS_UNIT = "contribution to the logit per feature cell (+ towards generated, - towards real)"
MAPS_CAPTION = ("Red: regions whose backbone features push the score towards 'generated'; blue: towards "
                "'real'; clear: little effect. Gradient x activation, one colour scale shared by all scales.")

_PANEL = 192  # longer side of each panel, pixels


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def _colormap(values: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """RGB (uint8) and alpha in [0, 1] of a diverging colour map (blue − / red +) for ``values``."""
    from matplotlib import colormaps

    lut = (colormaps["RdBu_r"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    t = np.clip(values / limit, -1.0, 1.0) if limit > 0 else np.zeros_like(values)
    rgb = lut[np.round((t + 1) * 127.5).astype(int)]
    return rgb, np.abs(t)


def _panel_size(height: int, width: int) -> tuple[int, int]:
    factor = _PANEL / max(height, width)
    return max(1, round(width * factor)), max(1, round(height * factor))


def render_evidence(prediction: dict[str, Any], title: str = "") -> Image.Image:
    """One RGB figure: the image, then one overlay per scale, a colour bar and a caption."""
    canvas = np.asarray(prediction["canvas"], dtype=np.uint8)
    maps = prediction["maps"]
    size = _panel_size(*canvas.shape[:2])
    base = Image.fromarray(canvas).resize(size, Image.Resampling.BILINEAR)
    grey = np.asarray(base.convert("L").convert("RGB"), dtype=np.float32)
    limit = max((float(np.abs(m).max()) for m in maps.values() if m.size), default=0.0)
    panels = [(f"score {prediction['score']:.2f}: {prediction['label']}", base)]
    for scale, m in maps.items():
        up = np.asarray(Image.fromarray(np.asarray(m, dtype=np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
        rgb, alpha = _colormap(up, limit)
        a = (0.15 + 0.7 * alpha)[..., None]
        blended = (grey * (1 - a) + rgb.astype(np.float32) * a).round().astype(np.uint8)
        panels.append((f"scale {scale}: {prediction['scale_scores'].get(scale, float('nan')):.2f}", Image.fromarray(blended)))
    font, small = _font(12), _font(10)
    pad, head, bar_w = 6, 18, 14
    caption = [MAPS_CAPTION[i : i + 95] for i in range(0, len(MAPS_CAPTION), 95)]
    width = pad + len(panels) * (size[0] + pad) + bar_w + 70
    height = (head if title else 0) + head + size[1] + pad + 14 * (len(caption) + 1) + pad
    fig = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(fig)
    y0 = 0
    if title:
        draw.text((pad, 2), title, fill="black", font=font)
        y0 = head
    for k, (label, img) in enumerate(panels):
        x = pad + k * (size[0] + pad)
        draw.text((x, y0 + 2), label, fill="black", font=small)
        fig.paste(img, (x, y0 + head))
    # colour bar: +limit at the top (generated), -limit at the bottom (real)
    x = pad + len(panels) * (size[0] + pad)
    ramp = np.linspace(limit, -limit, size[1])[:, None].repeat(bar_w, 1)
    rgb, _ = _colormap(ramp, limit)
    fig.paste(Image.fromarray(rgb), (x, y0 + head))
    draw.text((x + bar_w + 3, y0 + head - 2), f"+{limit:.2g} gen.", fill="black", font=small)
    draw.text((x + bar_w + 3, y0 + head + size[1] // 2 - 6), "0", fill="black", font=small)
    draw.text((x + bar_w + 3, y0 + head + size[1] - 12), f"-{limit:.2g} real", fill="black", font=small)
    y = y0 + head + size[1] + pad
    for line in caption:
        draw.text((pad, y), line, fill="black", font=small)
        y += 14
    draw.text((pad, y), f"Colour bar: {MAPS_UNIT}.", fill="black", font=small)
    return fig


def _replace(tmp: Path, path: Path) -> None:
    # derived, regenerable outputs: atomic rename, no fsync (an fsync per file doubled `detect --maps`)
    os.replace(tmp, path)


def save_evidence(prediction: dict[str, Any], folder: str | os.PathLike, stem: str, title: str = "") -> list[str]:
    """Write ``<stem>_evidence.png`` (the figure) and ``<stem>_evidence.npz`` (``map_<scale>`` float32
    arrays in logit units, ``canvas`` uint8, ``score``, ``scale_scores`` as ``scale_<s>``); returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png, npz = folder / f"{stem}_evidence.png", folder / f"{stem}_evidence.npz"
    tmp_png, tmp_npz = folder / f".{png.name}.tmp", folder / f".{stem}_evidence.tmp.npz"
    render_evidence(prediction, title or stem).save(tmp_png, format="PNG")
    _replace(tmp_png, png)
    arrays = {f"map_{s}": np.asarray(m, dtype=np.float32) for s, m in prediction["maps"].items()}
    arrays.update({f"scale_{s}": np.float64(v) for s, v in prediction["scale_scores"].items()})
    np.savez_compressed(tmp_npz, canvas=np.asarray(prediction["canvas"], dtype=np.uint8),
                        score=np.float64(prediction["score"]), **arrays)
    _replace(tmp_npz, npz)
    return [str(png), str(npz)]
