"""HTML for the app's page: one card per image and the detector card. Every value from a file name,
a config or an error message is escaped; figures are inline PNG data URIs, so nothing is written to disk."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from hrrkit.app.analysis import ImageResult, evidence_figure, retrospection_figure

CSS = """
.hrrkit-result {border: 1px solid #d0d0d0; border-radius: 8px; padding: 12px; margin-bottom: 14px;}
.hrrkit-verdict {font-size: 1.35em; font-weight: 700; padding: 2px 10px; border-radius: 6px; color: #fff;}
.hrrkit-verdict-real {background: #2e7d32;}
.hrrkit-verdict-generated {background: #c62828;}
.hrrkit-verdict-unsure {background: #ef8f00;}
.hrrkit-error {color: #b00020; font-weight: 600;}
.hrrkit-result table {border-collapse: collapse; margin: 6px 0;}
.hrrkit-result td, .hrrkit-result th, .hrrkit-card td, .hrrkit-card th {border: 1px solid #ddd; padding: 2px 8px; text-align: left;}
.hrrkit-result img {max-width: 100%; height: auto;}
.hrrkit-caption {font-size: 0.88em; color: #555; margin: 2px 0 10px 0;}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png(data: bytes, alt: str, css_class: str) -> str:
    return (f'<img class="{css_class}" alt="{_e(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">')


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def result_html(detector: Any, result: ImageResult, *, band: Any = None) -> str:
    """One image's card: verdict, score, per-scale scores, evidence overlay and retrospection panel
    (each with its caption), or the loader's message for an unreadable file."""
    row = result.row
    head = f'<div class="hrrkit-result" data-name="{_e(result.name)}"><h3 class="hrrkit-name">{_e(result.name)}</h3>'
    if not result.ok:
        return head + f'<p class="hrrkit-error">Cannot read this file: {_e(row["error"])}</p></div>'
    verdict = row["verdict"]
    if band:
        rule = (f"<i>real</i> below {band[0]:g}, <i>unsure</i> from {band[0]:g} to {band[1]:g}, "
                f"<i>generated</i> at ≥ {band[1]:g}")
    else:
        rule = f"<i>generated</i> at ≥ {_e(_fmt(row['threshold']))}"
    parts = [head, f'<p><span class="hrrkit-verdict hrrkit-verdict-{_e(verdict)}">{_e(verdict)}</span> '
             f'score <b class="hrrkit-score">{row["score"]:.4f}</b> '
             f"(probability of generated; {rule}; {row['width']}×{row['height']} px)</p>"]
    if row.get("note"):
        parts.append(f'<p class="hrrkit-note">note: {_e(row["note"])}</p>')
    scales = row["scale_scores"] or {}
    parts.append("<table class=\"hrrkit-scales\"><tr><th>scale</th>" + "".join(f"<th>{_e(s)}</th>" for s in scales)
                 + "</tr><tr><td>score</td>" + "".join(f"<td>{v:.4f}</td>" for v in scales.values()) + "</tr></table>")
    # the same meaning as the scale_scores column of `hrrkit detect` (DETECTION_FIELD_DOCS), in sentences
    parts.append('<p class="hrrkit-caption">Per-scale scores: the head applied to each scale\'s descriptor '
                 "alone, what the scale-consistency term compares in training. The head is non-linear, so the "
                 "score above (from the descriptor fused across scales) is not their mean and can lie outside "
                 "their range: read them as agreement between scales. The verdict uses the score above.</p>")
    evidence = evidence_figure(detector, result)
    if evidence is not None:
        png, caption = evidence
        parts.append(_png(png, f"evidence maps of {result.name}", "hrrkit-evidence"))
        parts.append(f'<p class="hrrkit-caption hrrkit-evidence-caption">{_e(caption)}</p>')
    png, caption = retrospection_figure(detector, result)
    parts.append(_png(png, f"reconstruction and residual of {result.name}", "hrrkit-retrospection"))
    parts.append(f'<p class="hrrkit-caption">{_e(caption)}</p></div>')
    return "".join(parts)


def results_html(detector: Any, results: list[ImageResult], *, band: Any = None) -> str:
    if not results:
        return "<p>Upload one or more images to score them.</p>"
    n_bad = sum(not r.ok for r in results)
    summary = (f'<p class="hrrkit-summary">{len(results) - n_bad} scored, {n_bad} unreadable.</p>')
    return summary + "".join(result_html(detector, r, band=band) for r in results)


def card_html(card: dict[str, Any]) -> str:
    """The detector card: what it was trained on, its validation (and test) metrics, threshold and retrospector."""
    retro = card.get("retrospector") or {}
    rows = [
        ("detector", card.get("name")), ("loaded from", card.get("source")),
        ("threshold", card.get("threshold")), ("unsure band", card.get("band") or "none"),
        ("calibration", card.get("calibration") or "none (training default threshold)"),
        ("retrospector", f"{retro.get('kind')}" + (f" ({retro['path']})" if retro.get("path") else "")
         + f"; backbone sees the {retro.get('input')}"),
        ("backbone / scales", f"{card.get('backbone')} / {_fmt(card.get('scales'))}"),
        ("input policy", f"{(card.get('input') or {}).get('eval_policy')}, crop {(card.get('input') or {}).get('crop_size')} px, "
         f"pixel limit {(card.get('input') or {}).get('max_pixels')}"),
    ]
    data = card.get("training_data")
    rows.append(("training data", ", ".join(f"{k}={_fmt(v)}" for k, v in data.items() if v is not None) if data
                 else "unknown (not saved from a hrrkit train run)"))
    val = card.get("validation") or {}
    rows.append(("validation AP", f"{_fmt(val.get('ap'))} (best epoch {_fmt(val.get('best_epoch'))})"))
    test = card.get("test")
    if test and test.get("overall"):
        o = test["overall"]
        rows.append((f"test ({test.get('split')})", ", ".join(f"{k} {_fmt(v)}" for k, v in o.items())))
    rows.append(("licence", card.get("license") or "not recorded"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in rows)
    return f'<table class="hrrkit-card">{body}</table>'
