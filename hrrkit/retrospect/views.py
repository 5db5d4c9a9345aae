"""Retrospection as a cached, per-image stage: MSR's deterministic part and the reconstruction run once.

MSR calls its retrospector inside ``forward``, on every (randomly dithered, randomly cropped) view, so
an epoch pays the retrospector's NFE per view, every epoch. DIRE precomputes its reconstructions once
per image; this module does the same inside hrrkit's pipeline:

1. :class:`RetrospectionStage` takes a detector's MSR stages (``rescale``, ``line_enhancement``,
   ``retrospector``) and, for one *whole* image and each scale ``s``, computes the pair
   ``(x̃_s, x̂_s)``: rescale (the same size policy and resampling as
   :class:`~hrrkit.nn.msr.NoisyRescale`), dither with noise that is a function of the image's content
   hash, the scale and a seed (so it is the same in every epoch and every process), line enhancement,
   reconstruction.
2. :class:`RetrospectedDataset` wraps an :class:`~hrrkit.data.dataset.ImageDataset`: it reads each
   pair from a :class:`~hrrkit.retrospect.cache.ReconstructionCache` keyed by the image's content hash
   and the stage's full config (:meth:`RetrospectionStage.config_dict`), computing and storing it on a
   miss, and cuts the dataset's crop (random in training, central in evaluation) *jointly* from
   ``x̃_s`` and ``x̂_s`` afterwards: the crop box in native pixels is mapped to every scale.
3. Its :meth:`RetrospectedDataset.collate` returns batches whose ``images`` is a
   :class:`RetrospectedViews`; :class:`~hrrkit.nn.msr.MultiScaleStyleRetrospection` (and so
   ``HRRDetector`` and the trainer) accepts it in place of an image batch and goes straight to
   residual → backbone → statistics. A second epoch performs no retrospector call.

**Both paths agree.** For whole images (``native`` policy) in evaluation mode the cached path gives
the same backbone inputs and descriptors as the in-forward path (tested). With crops the two differ by
design at crop borders: the cached path rescales, line-enhances and reconstructs the whole image and
crops afterwards (what a reconstruction of the photograph is), the in-forward path processes the crop.
In training the cached dither is a deterministic function of (content hash, scale, seed) instead of a
fresh draw per epoch.

**Augmentations** that change pixels (blur, JPEG) would have to run before the retrospector and so
defeat the cache; a dataset with one is refused (use ``augment: none`` or the in-forward path).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from hrrkit.data.dataset import batch_provenance
from hrrkit.retrospect.cache import CacheCorruptError, ReconstructionCache, file_content_hash

__all__ = ["RetrospectedDataset", "RetrospectedViews", "RetrospectionStage", "fill_view_cache"]

# bump when the stage's arithmetic changes (part of every key)
STAGE_VERSION = 1


@dataclass
class RetrospectedViews:
    """A batch of cached ``(x̃_s, x̂_s)`` pairs, the input MSR takes in place of images.

    Attributes mirror :class:`~hrrkit.nn.msr.ScaledViews` (B images, S scales, groups of equal size):
        scales: the S scale factors.
        enhanced: ``enhanced[s][g]`` (n_g, 3, h_g, w_g): rescaled, dithered, line-enhanced views x̃.
        reconstruction: ``reconstruction[s][g]`` the retrospector's x̂ of the same views.
        image_index: ``image_index[s][g]`` (n_g,) long: the batch image of each view.
        boxes: ``boxes[s][g]`` (n_g, 4) long: ``(top, left, height, width)`` in the scaled image.
        scaled_sizes: ``scaled_sizes[s][i]`` (h, w) of image i at scale s (whole image).
        num_images: B.
    """

    scales: tuple[float, ...]
    enhanced: list[list[Tensor]]
    reconstruction: list[list[Tensor]]
    image_index: list[list[Tensor]]
    boxes: list[list[Tensor]]
    scaled_sizes: list[list[tuple[int, int]]]
    num_images: int

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None, non_blocking: bool = False):
        """A copy on ``device`` (float tensors optionally cast to ``dtype``)."""
        def move(t: Tensor, cast: bool) -> Tensor:
            return t.to(device=device, dtype=dtype if (cast and dtype is not None) else t.dtype,
                        non_blocking=non_blocking)

        return RetrospectedViews(
            self.scales,
            [[move(t, True) for t in s] for s in self.enhanced],
            [[move(t, True) for t in s] for s in self.reconstruction],
            [[move(t, False) for t in s] for s in self.image_index],
            [[move(t, False) for t in s] for s in self.boxes],
            self.scaled_sizes,
            self.num_images,
        )

    def __len__(self) -> int:
        return self.num_images


def _describe(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names if hasattr(obj, name)}


class RetrospectionStage:
    """MSR's deterministic per-image part plus the reconstruction, for one whole image at a time.

    Args:
        msr: a :class:`~hrrkit.nn.msr.MultiScaleStyleRetrospection` (or an ``HRRDetector``, whose
            ``msr`` is used); its ``rescale``, ``line_enhancement`` and ``retrospector`` are applied.
        seed: seed of the content-hashed dither.
        dither: add the dither (training); ``None`` = as the rescale stage does in eval mode
            (``dither_in_eval``), i.e. no dither for evaluation by default.

    ``retrospector_calls`` counts the reconstructions this stage computed (a cache hit makes none).
    """

    def __init__(self, msr: Any, *, seed: int = 0, dither: bool | None = None) -> None:
        msr = getattr(msr, "msr", msr)
        if msr.retrospector is None:
            raise ValueError("RetrospectionStage: this MSR has no retrospector; there is nothing to cache")
        self.rescale = msr.rescale
        self.line_enhancement = msr.line_enhancement
        self.retrospector = msr.retrospector
        self.seed = int(seed)
        self.dither = bool(self.rescale.dither_in_eval) if dither is None else bool(dither)
        self.retrospector_calls = 0

    @property
    def scales(self) -> tuple[float, ...]:
        return tuple(self.rescale.scales)

    def config_dict(self) -> dict[str, Any]:
        """Everything a pair depends on: the retrospector's config (weights fingerprint included),
        the rescale policy, the line enhancement, the dither (on/off, std, seed) and this code's
        version. Any change gives another cache folder."""
        retro = self.retrospector
        retro_config = retro.config_dict() if hasattr(retro, "config_dict") else {"repr": repr(retro)}
        rescale = _describe(self.rescale, ("scales", "noise_std", "min_side", "max_side", "mode", "antialias"))
        line = None
        if self.line_enhancement is not None:
            line = _describe(self.line_enhancement, ("sigma_sharpen", "amount", "sigma_edge", "beta", "truncate", "eps"))
        return {
            "stage": "hrrkit.retrospect.views.RetrospectionStage",
            "stage_version": STAGE_VERSION,
            "retrospector": retro_config,
            "rescale": rescale,
            "line_enhancement": line,
            "dither": {"on": self.dither, "std": float(self.rescale.noise_std), "seed": self.seed},
        }

    def keys(self) -> list[str]:
        """The tensor names of one cache entry: ``enhanced_<s>`` and ``reconstruction_<s>`` per scale."""
        return [f"{kind}_{s}" for s in range(len(self.scales)) for kind in ("enhanced", "reconstruction")]

    def dither_noise(self, content_hash: str, scale_index: int, shape: tuple[int, ...]) -> Tensor:
        """The dither of one view: standard normal noise (float32, CPU) drawn from a generator seeded by
        SHA-256(content hash, scale, seed); the same in every epoch, process and machine."""
        key = f"{content_hash}:{self.scales[scale_index]!r}:{self.seed}".encode()
        seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def compute(self, image: Tensor, content_hash: str) -> dict[str, Tensor]:
        """``image`` (3, H, W) float in [-1, 1] → ``{"enhanced_s": (3, h_s, w_s), "reconstruction_s": ...}``
        (float32, the retrospector's device moved to CPU)."""
        if image.dim() != 3:
            raise ValueError(f"RetrospectionStage: expected one image (C, H, W), got {tuple(image.shape)}")
        out: dict[str, Tensor] = {}
        height, width = image.shape[-2:]
        x = image[None].float()
        with torch.no_grad():
            for s, scale in enumerate(self.scales):
                size = self.rescale.scaled_size(height, width, scale)
                view = self.rescale._resample(x, size)
                if self.dither and self.rescale.noise_std > 0:
                    view = view + self.rescale.noise_std * self.dither_noise(content_hash, s, tuple(view.shape))
                enhanced = self.line_enhancement(view) if self.line_enhancement is not None else view
                device = getattr(self.retrospector, "device", enhanced.device)
                recon = self.retrospector(enhanced.to(device)).to(enhanced.device)
                self.retrospector_calls += 1
                if recon.shape != enhanced.shape:
                    raise ValueError(f"the retrospector returned {tuple(recon.shape)} for {tuple(enhanced.shape)}")
                out[f"enhanced_{s}"] = enhanced[0].float().cpu()
                out[f"reconstruction_{s}"] = recon[0].float().cpu()
        return out


def _crop_box(height: int, width: int, size: int, policy: str, rng: random.Random) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` in native pixels: random (``random_crop``), central (``center_crop``) or
    the whole image (``native``). An image smaller than ``size`` was reflect-padded before."""
    if policy == "native":
        return 0, 0, height, width
    if policy == "random_crop":
        return rng.randint(0, height - size), rng.randint(0, width - size), size, size
    return (height - size) // 2, (width - size) // 2, size, size


class RetrospectedDataset(Dataset):
    """An :class:`~hrrkit.data.dataset.ImageDataset` whose items are cached ``(x̃_s, x̂_s)`` pairs.

    Args:
        base: the dataset (its samples, input policy, crop size, re-encoding, seed and epoch are used;
            policies ``native``, ``random_crop`` and ``center_crop``; augmentation must be ``none``).
        stage: the :class:`RetrospectionStage` (a detector's MSR stages).
        cache_root: root folder of the pair cache (entries under ``<root>/<config hash>/``).
        store_dtype: dtype of the stored pairs (float16 halves the disk; float32 is exact).
        strict: raise instead of skipping an image that fails to load or to reconstruct.

    Items: the base item's provenance fields plus ``views``: per scale ``(x̃_s, x̂_s)`` crops, and
    ``scaled_sizes``; or ``skipped`` with the reason (unreadable file, failed reconstruction, as the
    usual skipped-files report). ``stats`` counts ``hits``, ``misses``, ``recomputed_corrupt``.
    """

    def __init__(self, base: Any, stage: RetrospectionStage, cache_root: str | Path, *,
                 store_dtype: str | torch.dtype = "float16", strict: bool = False) -> None:
        if base.input_policy not in ("native", "random_crop", "center_crop"):
            raise ValueError(
                f"RetrospectedDataset: input policy {base.input_policy!r} is not supported by the cached path; "
                "use native, random_crop or center_crop (or the in-forward path)"
            )
        if not base.augmentation.is_identity:
            raise ValueError(
                "RetrospectedDataset: pixel augmentations (blur, JPEG) run before retrospection and would "
                "defeat the cache; set input.augment: none, or train with the in-forward path"
            )
        self.base = base
        self.stage = stage
        loader = {"reencode": None if base.reencode is None else [base.reencode.format, base.reencode.quality],
                  "load_options": {k: v for k, v in sorted(base.load_options.items())}}
        self.cache = ReconstructionCache(cache_root, {"pairs": stage.config_dict(), "loader": loader},
                                         store_dtype=store_dtype, required=stage.keys())
        self.strict = strict
        self.stats = {"hits": 0, "misses": 0, "recomputed_corrupt": 0}

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    @property
    def samples(self):
        return self.base.samples

    def header_sizes(self):
        return self.base.header_sizes()

    @property
    def pair_keys(self):
        """The base dataset's pair keys (the trainer batches a pair's members together)."""
        return getattr(self.base, "pair_keys", None)

    def pairs(self, index: int) -> tuple[dict[str, Tensor], tuple[int, int]]:
        """The verified cached pairs of item ``index`` (computed and stored on a miss) and the native
        (H, W) they were computed from (after padding to the crop size)."""
        from hrrkit.data.dataset import _hwc_to_tensor, pad_to_min_size

        sample = self.base.samples[index]
        content_hash = file_content_hash(sample.path)
        try:
            entry = self.cache.load(content_hash)
            self.stats["hits"] += 1
            return entry.tensors, (int(entry.metadata["height"]), int(entry.metadata["width"]))
        except KeyError:
            pass
        except CacheCorruptError:
            self.stats["recomputed_corrupt"] += 1
            self.cache.remove(content_hash)
        import numpy as np

        array = np.asarray(self.base.load(index))
        if self.base.input_policy != "native":
            array = pad_to_min_size(array, self.base.crop_size)
        image = _hwc_to_tensor(array)
        tensors = self.stage.compute(image, content_hash)
        self.stats["misses"] += 1
        self.cache.put(content_hash, tensors, {"source": sample.path.as_posix(), "height": image.shape[-2],
                                               "width": image.shape[-1]})
        return {k: v.to(self.cache.store_dtype) for k, v in tensors.items()}, (image.shape[-2], image.shape[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        from hrrkit.data.io import ImageLoadError

        sample = self.base.samples[index]
        item = self.base._info(index, sample)
        try:
            tensors, (height, width) = self.pairs(index)
        except ImageLoadError as exc:
            if self.strict:
                raise
            item["skipped"] = exc.to_dict()
            return item
        except Exception as exc:  # a retrospector failing on one image skips it, with the reason
            if self.strict:
                raise
            item["skipped"] = {"path": sample.path.as_posix(), "error": type(exc).__name__,
                               "reason": f"retrospection failed: {exc}"}
            return item
        rng = self.base.crop_rng(index)  # the base dataset's crop stream (shared by a pair's members)
        top, left, h, w = _crop_box(height, width, self.base.crop_size, self.base.input_policy, rng)
        views, boxes, sizes = [], [], []
        rescale = self.stage.rescale
        for s, scale in enumerate(self.stage.scales):
            enhanced, recon = tensors[f"enhanced_{s}"], tensors[f"reconstruction_{s}"]
            hs, ws = enhanced.shape[-2:]
            if (h, w) == (height, width):
                box = (0, 0, hs, ws)
            else:  # the native box at this scale, as large as the in-forward path's view of the crop
                ch, cw = rescale.scaled_size(h, w, scale)
                ch, cw = min(ch, hs), min(cw, ws)
                t = min(max(0, round(top * hs / height)), hs - ch)
                lft = min(max(0, round(left * ws / width)), ws - cw)
                box = (t, lft, ch, cw)
            t, lft, bh, bw = box
            views.append((enhanced[:, t : t + bh, lft : lft + bw].float(), recon[:, t : t + bh, lft : lft + bw].float()))
            boxes.append(box)
            sizes.append((int(hs), int(ws)))
        item.update(views=views, boxes=boxes, scaled_sizes=sizes)
        return item

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Like :func:`hrrkit.data.dataset.collate_samples`, with ``images`` a :class:`RetrospectedViews`
        (``None`` when every item was skipped); views of equal size share a group."""
        good, batch = batch_provenance(items)
        if not good:
            return batch
        scales = self.stage.scales
        enhanced, recon, index, boxes = [], [], [], []
        for s in range(len(scales)):
            by_size: dict[tuple[int, int], list[int]] = {}
            for row, item in enumerate(good):
                by_size.setdefault(tuple(item["views"][s][0].shape[-2:]), []).append(row)
            enhanced.append([torch.stack([good[r]["views"][s][0] for r in rows]) for rows in by_size.values()])
            recon.append([torch.stack([good[r]["views"][s][1] for r in rows]) for rows in by_size.values()])
            index.append([torch.tensor(rows, dtype=torch.long) for rows in by_size.values()])
            boxes.append([torch.tensor([good[r]["boxes"][s] for r in rows], dtype=torch.long)
                          for rows in by_size.values()])
        sizes = [[tuple(item["scaled_sizes"][s]) for item in good] for s in range(len(scales))]
        batch["images"] = RetrospectedViews(scales, enhanced, recon, index, boxes, sizes, len(good))
        return batch


def fill_view_cache(dataset: RetrospectedDataset, *, rank: int | None = None, world_size: int | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Compute every missing pair of ``dataset`` (this rank's share ``sorted(paths)[rank::world]`` under
    ``torchrun``); returns counts, failures (path, reason) and seconds per computed image."""
    import time

    from tqdm.auto import tqdm

    from hrrkit.retrospect.cache import distributed_rank_world

    default_rank, default_world = distributed_rank_world()
    rank = default_rank if rank is None else rank
    world_size = default_world if world_size is None else world_size
    order = sorted(range(len(dataset)), key=lambda i: dataset.samples[i].path.as_posix())[rank::world_size]
    before = dict(dataset.stats)
    failed: list[tuple[str, str]] = []
    started = time.perf_counter()
    for index in tqdm(order, desc=f"retrospect[{rank}/{world_size}]", disable=not progress, unit="img"):
        try:
            dataset.pairs(index)
        except Exception as exc:  # the usual skipped-files report; nothing cached is touched
            failed.append((dataset.samples[index].path.as_posix(), f"{type(exc).__name__}: {exc}"))
    seconds = time.perf_counter() - started
    done = {k: dataset.stats[k] - before[k] for k in before}
    cost = getattr(dataset.stage.retrospector, "cost", None)
    nfe_per_view = cost().nfe if callable(cost) else 0
    return {**done, "failed": failed, "total": len(order),
            "nfe_per_image": nfe_per_view * len(dataset.stage.scales),
            "seconds_per_computed_image": seconds / done["misses"] if done["misses"] else 0.0}

