"""Evidence figures: the contribution maps of :mod:`hrrkit.models.evidence` drawn over the image,
with a colour bar and a caption, plus the raw arrays for programs (``.npz``)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAPS_UNIT = "contribution to the logit per feature cell (+ towards generated, - towards real)"
MAPS_CAPTION = ("Red: regions whose backbone features push the score towards 'generated'; blue: towards "
                "'real'; clear: little effect. Gradient x activation, one colour scale shared by all scales, "
                "saturated at the 99th percentile of |contribution|.")

_PANEL = 256  # longer side of each panel, pixels (4 panels and the bar fit a page at about 2/3 size)
#: the colour scale ends at this percentile of |contribution| over all maps: a few extreme cells would
#: otherwise take the whole range and leave every other cell nearly clear (the figure looked empty)
_SATURATION_PERCENTILE = 99.0


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def _colormap(values: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """RGB (uint8) and |value| / ``limit`` clipped to [0, 1] of a diverging colour map (blue − / red +)."""
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
    values = np.concatenate([np.abs(np.asarray(m, dtype=np.float32)).ravel() for m in maps.values() if m.size] or
                            [np.zeros(1, np.float32)])
    limit = float(np.percentile(values, _SATURATION_PERCENTILE)) or float(values.max())
    panels = [(f"score {prediction['score']:.2f}: {prediction['label']}", base)]
    for scale, m in maps.items():
        up = np.asarray(Image.fromarray(np.asarray(m, dtype=np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
        rgb, strength = _colormap(up, limit)
        # opacity rises fast for weak contributions (square root), so the map reads at page width
        a = (0.25 + 0.7 * np.sqrt(strength))[..., None]
        blended = (grey * (1 - a) + rgb.astype(np.float32) * a).round().astype(np.uint8)
        panels.append((f"scale {scale}: {prediction['scale_scores'].get(scale, float('nan')):.2f}", Image.fromarray(blended)))
    font, small = _font(16), _font(14)
    pad, head, bar_w, line = 8, 22, 18, 18
    width = pad + len(panels) * (size[0] + pad) + bar_w + 96
    per_line = max(40, (width - 2 * pad) // 8)  # about 8 px per character at 14 px
    caption = textwrap.wrap(MAPS_CAPTION, per_line)
    lines = len(caption) + len(textwrap.wrap(f"Colour bar: {MAPS_UNIT}.", per_line))
    height = (head if title else 0) + head + size[1] + pad + line * lines + pad
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
    draw.text((x + bar_w + 3, y0 + head - 2), f">= +{limit:.2g}", fill="black", font=small)
    draw.text((x + bar_w + 3, y0 + head + 14), "gen.", fill="black", font=small)
    draw.text((x + bar_w + 3, y0 + head + size[1] // 2 - 8), "0", fill="black", font=small)
    draw.text((x + bar_w + 3, y0 + head + size[1] - 32), "real", fill="black", font=small)
    draw.text((x + bar_w + 3, y0 + head + size[1] - 16), f"<= -{limit:.2g}", fill="black", font=small)
    y = y0 + head + size[1] + pad
    for text in caption:
        draw.text((pad, y), text, fill="black", font=small)
        y += line
    for text in textwrap.wrap(f"Colour bar: {MAPS_UNIT}.", per_line):
        draw.text((pad, y), text, fill="black", font=small)
        y += line
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
