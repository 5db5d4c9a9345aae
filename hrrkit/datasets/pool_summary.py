"""Counts of what the image pools hold, per source and per generator family (``hrrkit data pools``).

    from hrrkit.datasets.pool_summary import summarise, format_summary
    summary = summarise(list(PhotoPool().records()) + list(GeneratedPool().records()))
    print(format_summary(summary))

``summarise`` works on any :class:`~hrrkit.datasets.pool_record.PoolRecord` list, so a user's folder
pools count the same way. "distinct" counts clusters with their primary member (re-encodes of one
picture and the frames of one clip count once); "clips" counts animated previews.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from hrrkit.datasets.pool_record import GROUPS, PoolRecord

__all__ = ["format_summary", "summarise"]


def summarise(records: Iterable[PoolRecord]) -> dict[str, Any]:
    """``{"photos": {...}, "generated": {...}}``: per-source photo counts and per-family generated counts.

    Photos: per source key: ``registry``, ``source``, ``licence``, ``images``, ``flags`` (count per flag).
    Generated: per family: ``images`` (files: stills and frames), ``distinct`` (clusters), ``clips``
    (animated previews), ``groups`` (images per report group), ``generators``; and per group the
    same totals. Both with a ``total``.
    """
    photos: dict[str, dict[str, Any]] = {}
    families: dict[str, dict[str, Any]] = {}
    group_images: Counter = Counter()
    group_clusters: dict[str, set[str]] = defaultdict(set)
    clusters: set[str] = set()
    clips: set[str] = set()
    images = 0
    for record in records:
        if record.label == 0:
            entry = photos.setdefault(record.source_key, {"registry": record.registry, "source": record.source,
                                                          "license": record.license, "images": 0, "flags": Counter()})
            entry["images"] += 1
            entry["flags"].update(record.flags)
            continue
        images += 1
        entry = families.setdefault(record.family, {"images": 0, "distinct": set(), "clips": set(),
                                                    "groups": Counter(), "generators": set()})
        entry["images"] += 1
        entry["distinct"].add(record.cluster)
        entry["generators"].add(record.generator)
        group = record.group or f"({record.kind})"
        entry["groups"][group] += 1
        group_images[group] += 1
        group_clusters[group].add(record.cluster)
        clusters.add(record.cluster)
        if "frame" in record.extra:
            entry["clips"].add(record.extra.get("src_sha256", record.cluster))
            clips.add(record.extra.get("src_sha256", record.cluster))
    for entry in photos.values():
        entry["flags"] = dict(sorted(entry["flags"].items()))
    for entry in families.values():
        entry["distinct"], entry["clips"] = len(entry["distinct"]), len(entry["clips"])
        entry["groups"] = dict(sorted(entry["groups"].items()))
        entry["generators"] = sorted(entry["generators"])
    by_group = {g: {"images": group_images[g], "distinct": len(group_clusters[g])}
                for g in [*GROUPS, *sorted(set(group_images) - set(GROUPS))] if g in group_images}
    return {
        "photos": {"sources": dict(sorted(photos.items(), key=lambda kv: (-kv[1]["images"], kv[0]))),
                   "total": sum(e["images"] for e in photos.values())},
        "generated": {"families": dict(sorted(families.items(), key=lambda kv: (-kv[1]["distinct"], kv[0]))),
                      "groups": by_group, "total": images, "distinct": len(clusters), "clips": len(clips)},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Plain-text tables of :func:`summarise`'s result."""
    lines = []
    photos = summary["photos"]
    if photos["sources"]:
        lines += [f"real photographs: {photos['total']} from {len(photos['sources'])} sources", "",
                  f"  {'source':28s} {'registry':8s} {'photos':>6s}  flags"]
        for key, entry in photos["sources"].items():
            flags = ", ".join(f"{k} {v}" for k, v in entry["flags"].items())
            lines.append(f"  {key:28s} {entry['registry']:8s} {entry['images']:6d}  {flags}")
        lines.append("")
    generated = summary["generated"]
    if generated["families"]:
        groups = list(generated["groups"])
        lines += [f"generated images: {generated['total']} files, {generated['distinct']} distinct pictures or "
                  f"clips ({generated['clips']} clips) in {len(generated['families'])} families", "",
                  f"  {'family':20s} {'distinct':>8s} {'files':>6s} {'clips':>5s}  " +
                  " ".join(f"{g:>13s}" for g in groups) + "  generators"]
        for family, entry in generated["families"].items():
            cells = " ".join(f"{entry['groups'].get(g, 0):13d}" for g in groups)
            names = ", ".join(entry["generators"])
            lines.append(f"  {family:20s} {entry['distinct']:8d} {entry['images']:6d} {entry['clips']:5d}  {cells}  "
                         f"{names[:60] + ('...' if len(names) > 60 else '')}")
        lines.append("  " + "-" * 44)
        lines.append(f"  {'by group':20s} " + "; ".join(
            f"{g}: {v['distinct']} distinct, {v['images']} files" for g, v in generated["groups"].items()))
    return "\n".join(lines)
