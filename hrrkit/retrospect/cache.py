"""On-disk reconstruction cache: content-hash keys, atomic safetensors entries, resumable runs.

Layout under the cache root::

    <root>/<config_hash>/config.json                       what produced the entries (readable)
    <root>/<config_hash>/entries/<h[:2]>/<h>.safetensors   one entry per image content hash h

* **Keys**: ``h`` is the SHA-256 of the image *file bytes* (a renamed or copied file hits the cache;
  a re-encoded one does not: it is a different input). ``config_hash`` covers the retrospector
  config (settings + weight fingerprint) and the loading policy, so a change of model, steps or
  loader never reuses stale entries.
* **Entries**: ``reconstruction``, ``residual`` and (if the retrospector has one)
  ``latent_error`` tensors in ``store_dtype`` (float16 by default: halves the disk, error ≤ 5e-4
  in [-1, 1]), with metadata: source path, original size, NFE, seconds it cost, config hash and a
  BLAKE2 checksum of the tensor bytes and the metadata.
* **Atomic writes**: an entry is written to a temporary file in the same folder, fsynced and
  renamed into place, so a killed run leaves whole entries or none; leftover temporary files of
  dead processes are removed on the next run.
* **Corruption**: an entry that does not parse (truncated), lacks a tensor, names another image or
  another config (copied from another cache folder), or fails its checksum (tensor bytes or metadata
  edited) is reported, deleted and recomputed; it is never used.
* **Sharding**: under ``torchrun`` (or any ``torch.distributed`` group) each rank takes the files
  ``sorted(files)[rank::world_size]``; ranks write disjoint entries and the summaries are summed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import hrrkit
from hrrkit.retrospect.base import Retrospector, dtype_name, parse_dtype, stable_hash
from hrrkit.utils.atomic import atomic_write_bytes, remove_stale_temporaries

# 2: the entry checksum also covers the metadata (an edited NFE or source is caught)
CACHE_FORMAT = 2
# owner-tagged temporaries (".tmp-<host>-<pid>-<random>") so a resumed run can clean up after a kill
_TMP_PREFIX = ".tmp-"


class CacheCorruptError(RuntimeError):
    """A cache entry exists but cannot be trusted (unreadable, incomplete, checksum mismatch)."""


class CacheConfigMismatchError(RuntimeError):
    """The cache folder for this config hash holds a different config (should never happen)."""


def file_content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tensors_checksum(tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> str:
    """BLAKE2b over the names, dtypes, shapes and bytes of ``tensors`` and the ``metadata`` items
    (except ``checksum`` itself), order-independent: an edited tensor *or* metadata field (source,
    size, NFE, config hash) fails the check."""
    digest = hashlib.blake2b(digest_size=16)
    for key in sorted(metadata or {}):
        if key != "checksum":
            digest.update(f"meta|{key}={metadata[key]}|".encode())  # type: ignore[index]
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A verified cache entry: tensors (CPU, stored dtype) and string metadata."""

    tensors: dict[str, Tensor]
    metadata: dict[str, str]

    @property
    def reconstruction(self) -> Tensor:
        return self.tensors["reconstruction"]

    @property
    def residual(self) -> Tensor:
        return self.tensors["residual"]

    @property
    def latent_error(self) -> Tensor | None:
        return self.tensors.get("latent_error")


class ReconstructionCache:
    """A cache folder for one configuration.

    Args:
        root: the cache root (created if missing).
        config: a JSON-serialisable description of everything the entries depend on (typically
            ``{"retrospector": r.config_dict(), "loader": ...}``); its hash names the subfolder.
        store_dtype: dtype of the stored tensors (``float16``, ``bfloat16`` or ``float32``).
        required: the tensors every entry must hold (default :attr:`REQUIRED`; the per-scale pairs of
            :mod:`hrrkit.retrospect.views` name their own).
    """

    REQUIRED = ("reconstruction", "residual")

    def __init__(self, root: str | os.PathLike, config: dict[str, Any], store_dtype: torch.dtype | str = "float16",
                 required: Sequence[str] | None = None):
        self.root = Path(root)
        self.required = tuple(self.REQUIRED if required is None else required)
        self.store_dtype = parse_dtype(store_dtype)
        if self.store_dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"store_dtype must be float16, bfloat16 or float32, got {self.store_dtype}")
        self.config = {"cache_format": CACHE_FORMAT, "store_dtype": dtype_name(self.store_dtype), **config}
        self.config_hash = stable_hash(self.config)
        self.dir = self.root / self.config_hash
        self.entries_dir = self.dir / "entries"
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()

    def _write_config(self) -> None:
        path = self.dir / "config.json"
        text = json.dumps(self.config, indent=2, sort_keys=True, default=str)
        if path.is_file():
            try:
                existing = json.loads(path.read_text())
            except json.JSONDecodeError:
                existing = None  # a corrupt config.json is rewritten below
            if existing is not None:
                if stable_hash(existing) != self.config_hash:
                    raise CacheConfigMismatchError(
                        f"{path} holds a different configuration than its folder name says; "
                        "remove the folder or point the cache elsewhere"
                    )
                return
        atomic_write_bytes(path, text.encode(), tmp_prefix=_TMP_PREFIX)

    # ------------------------------------------------------------------------------------------
    def entry_path(self, content_hash: str) -> Path:
        if len(content_hash) < 3 or not all(c in "0123456789abcdef" for c in content_hash):
            raise ValueError(f"content hash must be lower-case hex, got {content_hash!r}")
        return self.entries_dir / content_hash[:2] / f"{content_hash}.safetensors"

    def put(self, content_hash: str, tensors: dict[str, Tensor], metadata: dict[str, Any] | None = None) -> Path:
        """Store one entry atomically (tensors converted to ``store_dtype``, moved to CPU)."""
        from safetensors.torch import save

        missing = [k for k in self.required if k not in tensors]
        if missing:
            raise ValueError(f"a cache entry needs tensors {list(self.required)}; missing {missing}")
        stored = {k: v.detach().to("cpu", self.store_dtype).contiguous() for k, v in tensors.items() if v is not None}
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        meta.update(content_hash=content_hash, config_hash=self.config_hash, hrrkit_version=hrrkit.__version__)
        meta["checksum"] = tensors_checksum(stored, meta)
        path = self.entry_path(content_hash)
        atomic_write_bytes(path, save(stored, metadata=meta), tmp_prefix=_TMP_PREFIX)
        return path

    def load(self, content_hash: str) -> CacheEntry:
        """Read and verify one entry.

        Raises:
            KeyError: no entry for this hash.
            CacheCorruptError: the entry is unreadable, incomplete or fails its checksum.
        """
        from safetensors import safe_open

        path = self.entry_path(content_hash)
        if not path.is_file():
            raise KeyError(content_hash)
        try:
            tensors: dict[str, Tensor] = {}
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                for key in handle.keys():
                    tensors[key] = handle.get_tensor(key)
        except Exception as err:
            raise CacheCorruptError(f"{path}: unreadable safetensors file ({err})") from err
        missing = [k for k in self.required if k not in tensors]
        if missing:
            raise CacheCorruptError(f"{path}: missing tensors {missing}")
        if metadata.get("content_hash") != content_hash:
            raise CacheCorruptError(f"{path}: the entry is of another image ({metadata.get('content_hash')!r})")
        if metadata.get("config_hash") != self.config_hash:
            raise CacheCorruptError(
                f"{path}: the entry was written by another config ({metadata.get('config_hash')!r}, "
                f"this cache is {self.config_hash})"
            )
        if metadata.get("checksum") != tensors_checksum(tensors, metadata):
            raise CacheCorruptError(f"{path}: checksum mismatch (the tensor bytes or the metadata changed on disk)")
        return CacheEntry(tensors, metadata)

    def status(self, content_hash: str) -> str:
        """``"ok"``, ``"missing"`` or ``"corrupt"`` (reads and verifies the entry)."""
        try:
            self.load(content_hash)
        except KeyError:
            return "missing"
        except CacheCorruptError:
            return "corrupt"
        return "ok"

    def get(self, content_hash: str) -> CacheEntry | None:
        """The verified entry, or ``None`` if it is missing or corrupt."""
        try:
            return self.load(content_hash)
        except (KeyError, CacheCorruptError):
            return None

    def get_file(self, path: str | os.PathLike) -> CacheEntry | None:
        """The entry for an image file (hashes the file)."""
        return self.get(file_content_hash(path))

    def remove(self, content_hash: str) -> None:
        self.entry_path(content_hash).unlink(missing_ok=True)

    def __contains__(self, content_hash: str) -> bool:
        return self.entry_path(content_hash).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.entries_dir.glob("*/*.safetensors"))

    def clean_stale_tmp(self) -> int:
        """Delete temporary files left by dead processes on this host; returns how many."""
        return remove_stale_temporaries(self.dir, _TMP_PREFIX)


# ----------------------------------------------------------------------------------------------
# Precomputing a folder
# ----------------------------------------------------------------------------------------------
ImageLoader = Callable[[Path], Tensor]


def default_image_loader(path: Path) -> Tensor:
    """``(3, H, W)`` float32 in [-1, 1] under hrrkit's loading policy (:mod:`hrrkit.data.io`)."""
    from hrrkit.data.io import load_image, to_tensor

    return to_tensor(load_image(path, mode="RGB"))


DEFAULT_LOADER_ID = "hrrkit.data.io.load_image(mode=RGB)+to_tensor"


@dataclass
class RunSummary:
    """What a :func:`precompute` run did (summed over ranks when distributed).

    Cost is first-class: ``nfe`` counts the denoiser evaluations of the computed images,
    ``retrospect_seconds`` the wall time inside the retrospector (batched calls), and
    ``hit_seconds`` the time spent reading and verifying the entries that were already cached.
    """

    total: int = 0
    computed: int = 0
    cached: int = 0
    recomputed_corrupt: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    nfe: int = 0
    stale_tmp_removed: int = 0
    retrospect_seconds: float = 0.0
    hit_seconds: float = 0.0

    @property
    def nfe_per_image(self) -> float:
        """Denoiser evaluations per computed image (0 when nothing was computed)."""
        return self.nfe / self.computed if self.computed else 0.0

    @property
    def seconds_per_image(self) -> float:
        """Wall seconds of retrospection per computed image (batched; 0 when nothing was computed)."""
        return self.retrospect_seconds / self.computed if self.computed else 0.0

    @property
    def seconds_per_hit(self) -> float:
        """Seconds to read and verify one cached entry (0 when nothing was cached)."""
        return self.hit_seconds / self.cached if self.cached else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "computed": self.computed,
            "cached": self.cached,
            "recomputed_corrupt": self.recomputed_corrupt,
            "failed": len(self.failed),
            "nfe_total": self.nfe,
            "nfe_per_image": round(self.nfe_per_image, 3),
            "seconds_per_image": round(self.seconds_per_image, 6),
            "seconds_per_cache_hit": round(self.seconds_per_hit, 6),
            "retrospect_seconds": round(self.retrospect_seconds, 3),
            "stale_tmp_removed": self.stale_tmp_removed,
        }


def distributed_rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` from an initialised ``torch.distributed`` group, else the
    ``RANK``/``WORLD_SIZE`` variables ``torchrun`` sets, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard(files: Sequence[Path], rank: int, world_size: int) -> list[Path]:
    """This rank's files: ``sorted(files)[rank::world_size]`` (every rank sorts the same way)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world size {world_size}")
    ordered = sorted({Path(f) for f in files}, key=lambda p: p.as_posix())
    return ordered[rank::world_size]


def cache_config(retrospector: Retrospector, loader_id: str = DEFAULT_LOADER_ID) -> dict[str, Any]:
    """The config a cache for ``retrospector`` is keyed by."""
    return {"retrospector": retrospector.config_dict(), "loader": loader_id}


def precompute(
    retrospector: Retrospector,
    files: Iterable[str | os.PathLike],
    cache: ReconstructionCache,
    *,
    batch_size: int = 8,
    loader: ImageLoader = default_image_loader,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    max_pending: int | None = None,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Reconstruct every image of ``files`` that the cache lacks, batched by image size.

    Entries already present and valid are skipped (so an interrupted run resumes), corrupt ones
    are recomputed, and unreadable images are recorded in ``summary.failed`` with the reason;
    nothing aborts the run. ``rank``/``world_size`` default to :func:`distributed_rank_world`;
    when a ``torch.distributed`` group is initialised the returned summary is summed over ranks.

    Args:
        batch_size: images per retrospector call (only same-size images share a batch).
        loader: ``path → (3, H, W)`` float tensor in [-1, 1]; its errors mark the file failed.
        max_pending: decoded images held while waiting for a full same-size batch (default
            ``4 × batch_size``); above it the largest partial batch is processed.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    default_rank, default_world = distributed_rank_world()
    rank = default_rank if rank is None else rank
    world_size = default_world if world_size is None else world_size
    max_pending = max_pending or 4 * batch_size
    say = log or (lambda msg: None)
    mine = shard([Path(f) for f in files], rank, world_size)
    summary = RunSummary(total=len(mine))
    summary.stale_tmp_removed = cache.clean_stale_tmp()

    buckets: dict[tuple[int, int], list[tuple[Path, str, Tensor]]] = {}
    pending_hashes: set[str] = set()

    def flush(key: tuple[int, int]) -> None:
        items = buckets.pop(key)
        for h in (h for _, h, _ in items):
            pending_hashes.discard(h)
        started = time.perf_counter()
        try:
            out = retrospector.retrospect(torch.stack([img for _, _, img in items]))
        except Exception as err:  # one bad batch must not end the run
            if len(items) > 1:  # retry one by one so only the culprit fails
                for item in items:
                    buckets[key] = [item]
                    pending_hashes.add(item[1])
                    flush(key)
                return
            summary.failed.append((str(items[0][0]), f"retrospection failed: {type(err).__name__}: {err}"))
            say(f"failed: {items[0][0]}: {err}")
            return
        seconds = time.perf_counter() - started
        summary.retrospect_seconds += seconds
        for i, (path, content_hash, img) in enumerate(items):
            tensors = {"reconstruction": out.reconstruction[i], "residual": out.residual[i]}
            if out.latent_error is not None:
                tensors["latent_error"] = out.latent_error[i]
            cache.put(
                content_hash,
                tensors,
                {"source": path.as_posix(), "height": img.shape[-2], "width": img.shape[-1], "nfe": out.nfe,
                 "seconds": f"{seconds / len(items):.6f}"},
            )
            summary.computed += 1
            summary.nfe += out.nfe

    bar = tqdm(mine, desc=f"retrospect[{rank}/{world_size}]", disable=not progress, position=rank, unit="img")
    for path in bar:
        try:
            content_hash = file_content_hash(path)
        except OSError as err:
            summary.failed.append((str(path), f"unreadable: {err}"))
            say(f"failed: {path}: {err}")
            continue
        if content_hash in pending_hashes:  # a duplicate of an image waiting in a batch
            summary.cached += 1
            continue
        started = time.perf_counter()
        state = cache.status(content_hash)
        if state == "ok":
            summary.hit_seconds += time.perf_counter() - started
            summary.cached += 1
            continue
        if state == "corrupt":
            say(f"corrupt cache entry for {path}; recomputing")
            cache.remove(content_hash)
            summary.recomputed_corrupt += 1
        try:
            image = loader(path)
        except Exception as err:  # the loader's typed errors name the file and the problem
            summary.failed.append((str(path), f"{type(err).__name__}: {err}"))
            say(f"failed: {path}: {err}")
            continue
        if image.dim() != 3 or image.shape[0] != 3:
            summary.failed.append((str(path), f"loader returned shape {tuple(image.shape)}, expected (3, H, W)"))
            continue
        key = (int(image.shape[-2]), int(image.shape[-1]))
        buckets.setdefault(key, []).append((path, content_hash, image))
        pending_hashes.add(content_hash)
        if len(buckets[key]) >= batch_size:
            flush(key)
        elif sum(len(v) for v in buckets.values()) > max_pending:
            flush(max(buckets, key=lambda k: len(buckets[k])))
    for key in list(buckets):
        flush(key)
    bar.close()
    return _reduce_summary(summary)


def _reduce_summary(summary: RunSummary) -> RunSummary:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return summary
    counters = [f.name for f in fields(RunSummary) if f.name != "failed"]  # the summable numbers
    counts = torch.tensor(
        [float(getattr(summary, name)) for name in counters],
        dtype=torch.float64,
        device="cuda" if dist.get_backend() == "nccl" else "cpu",  # NCCL reduces only CUDA tensors
    )
    dist.all_reduce(counts)
    failures: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(failures, summary.failed)
    return RunSummary(
        **{name: (value if isinstance(getattr(summary, name), float) else int(round(value)))
           for name, value in zip(counters, counts.tolist(), strict=True)},
        failed=[f for part in failures for f in part],
    )
