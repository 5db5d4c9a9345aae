"""Features of a frozen backbone, computed once per input view and reused (linear probes in seconds).

A frozen backbone (no gradients, BatchNorm on fixed statistics) is a pure function of its input, so its
feature map for a given view — an image at one scale, one crop — never changes. :class:`FeatureCache`
keys each view by the SHA-256 of its float32 tensor bytes and shape (the *content* of exactly what
the backbone sees, after cropping, augmentation and rescaling) plus a config fingerprint (backbone,
weights digest, level, input offset, storage dtype), and keeps the feature map

* in memory (``"memory"``: this process, least-recently-used entries beyond ``max_memory_bytes``,
  256 MiB by default, are dropped — about 2000 views of 224 px at EfficientNet-Lite0's 1280-channel
  head in float16 — so scoring a large folder never grows memory without bound), and optionally
* on disk (a folder path): entries of hrrkit's reconstruction cache format
  (:class:`~hrrkit.retrospect.cache.ReconstructionCache`: ``<root>/<config_hash>/entries/…``, atomic
  safetensors files with checksums, corrupt entries recomputed), so a second run, an evaluation or a
  sweep over head settings reads them back.

Hits need identical views: a deterministic input policy (centre crops, no augmentation, no dither).
With random crops every view is new and the cache only costs a hash per view (≈1 ms at 224 px).

Features are stored in ``store_dtype`` (float16 by default) and *always* returned rounded to it, on
a miss as on a hit, so a run's numbers do not depend on what was cached before.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["FeatureCache", "state_fingerprint", "view_content_hash"]


def view_content_hash(view: Tensor) -> str:
    """SHA-256 (hex) of one view: its shape and float32 bytes (contiguous, CPU)."""
    t = view.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(f"{tuple(t.shape)}|".encode())
    digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def state_fingerprint(module: torch.nn.Module) -> str:
    """BLAKE2b (hex) of a module's parameters and buffers: names, dtypes, shapes and bytes (0-dim
    buffers such as BatchNorm's ``num_batches_tracked`` included)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class FeatureCache:
    """Per-view cache of a frozen backbone's outputs.

    Args:
        location: ``"memory"`` or a folder for the on-disk cache (memory is used too).
        fingerprint: JSON-serialisable description of everything the features depend on.
        store_dtype: ``float16`` (default), ``bfloat16`` or ``float32``.
        max_memory_bytes: the in-memory part evicts least-recently-used entries beyond this.
    """

    def __init__(self, location: str | os.PathLike, fingerprint: dict[str, Any], *, store_dtype: str = "float16",
                 max_memory_bytes: int = 256 << 20):
        from hrrkit.retrospect.base import parse_dtype

        self.store_dtype = parse_dtype(store_dtype)
        if self.store_dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"FeatureCache: store_dtype must be float16, bfloat16 or float32, got {store_dtype!r}")
        self.fingerprint = {"kind": "frozen_backbone_features", **fingerprint}
        self.max_memory_bytes = int(max_memory_bytes)
        self._memory: OrderedDict[str, Tensor] = OrderedDict()
        self._memory_bytes = 0
        self.hits = self.misses = 0
        self.disk = None
        if str(location) != "memory":
            self.disk = _FeatureStore(Path(location), self.fingerprint, self.store_dtype)

    @property
    def location(self) -> str:
        return "memory" if self.disk is None else str(self.disk.dir)

    def __call__(self, views: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """``compute(views[misses])`` for the views not cached yet; all outputs, in order, rounded to
        ``store_dtype`` and returned in ``views``' float dtype on ``views``' device. ``views``: (B, ...)."""
        keys = [view_content_hash(v) for v in views]
        found: dict[int, Tensor] = {}
        for i, key in enumerate(keys):
            cached = self._lookup(key)
            if cached is not None:
                found[i] = cached
        missing = [i for i in range(len(keys)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                computed = compute(views[missing])
            for j, i in enumerate(missing):
                stored = computed[j].detach().to("cpu", self.store_dtype).contiguous()
                self._remember(keys[i], stored)
                if self.disk is not None:
                    self.disk.put(keys[i], {"features": stored})
                found[i] = stored
        out_dtype = views.dtype if views.is_floating_point() else torch.float32
        return torch.stack([found[i] for i in range(len(keys))]).to(views.device, out_dtype)

    def _lookup(self, key: str) -> Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.disk is not None:
            entry = self.disk.get(key)
            if entry is not None:
                features = entry.tensors["features"]
                self._remember(key, features)
                return features
        return None

    def _remember(self, key: str, features: Tensor) -> None:
        size = features.numel() * features.element_size()
        if size > self.max_memory_bytes:
            return
        self._memory[key] = features
        self._memory_bytes += size
        while self._memory_bytes > self.max_memory_bytes:
            _, old = self._memory.popitem(last=False)
            self._memory_bytes -= old.numel() * old.element_size()

    def stats(self) -> dict[str, Any]:
        return {"location": self.location, "hits": self.hits, "misses": self.misses,
                "memory_entries": len(self._memory), "memory_bytes": self._memory_bytes}


def _FeatureStore(root: Path, fingerprint: dict[str, Any], store_dtype: torch.dtype):
    """The on-disk part: hrrkit's reconstruction cache, holding a ``features`` tensor per entry."""
    from hrrkit.retrospect.cache import ReconstructionCache

    class FeatureStore(ReconstructionCache):
        REQUIRED = ("features",)

    return FeatureStore(root, fingerprint, store_dtype=store_dtype)


def _drop_feature_cache(module: torch.nn.Module, incompatible_keys) -> None:
    module._feature_cache = None


class FrozenFeatureBackbone(torch.nn.Module):
    """Base of the pretrained registry backbones: ``frozen`` and the optional per-view feature cache.

    A subclass sets ``self.body`` (the network the features depend on; its weights are fingerprinted)
    and implements :meth:`_features` (``(B, C, H, W)`` → ``(B, out_channels, h, w)``) and
    :meth:`_cache_identity` (a JSON-able dict naming the backbone and every option its features
    depend on).

    ``frozen=True``: no graph through the backbone unless the input needs gradients (memory); the
    output is an autograd leaf when grad mode is on, so gradient-based evidence maps
    (d logit / d features) still work. ``feature_cache`` (``frozen=True`` only): ``"memory"`` or a
    folder — each view's feature map is computed once and reused (:class:`FeatureCache`; keyed by
    the view's content and the weights' fingerprint, stored and returned as float16).
    """

    def __init__(self, *, name: str, frozen: bool, feature_cache: str | os.PathLike | None):
        super().__init__()
        if feature_cache is not None and not frozen:
            raise ValueError(f"{name}: feature_cache needs frozen=True (a trained backbone's features "
                             "change at every step)")
        self.frozen = bool(frozen)
        self.feature_cache_location = None if feature_cache is None else str(feature_cache)
        self._feature_cache: FeatureCache | None = None
        # new weights (a checkpoint loaded into this module) invalidate the fingerprint: rebuild on use
        self.register_load_state_dict_post_hook(_drop_feature_cache)

    def _features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _cache_identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if not self.frozen or x.requires_grad:
            return self._features(x)
        with torch.no_grad():
            out = self._features(x) if self.feature_cache_location is None else self.feature_cache(x, self._features)
        return out.requires_grad_() if torch.is_grad_enabled() else out

    @property
    def feature_cache(self) -> FeatureCache | None:
        """The :class:`FeatureCache` (built on first use, when the weights are final — after a
        checkpoint has been loaded), or ``None``."""
        if self.feature_cache_location is None:
            return None
        if self._feature_cache is None:
            self._feature_cache = FeatureCache(self.feature_cache_location, {
                **self._cache_identity(), "weights": state_fingerprint(self.body),
                "torch": torch.__version__.split("+")[0],
            })
        return self._feature_cache
