"""Offline built-in datasets: the mini-benchmark of real photograph crops and diffusion samples.

    from hrrkit.datasets import build_mini_benchmark
    bench = build_mini_benchmark(quick=True)          # cached under ~/.cache/hrrkit/mini-benchmark
    train = bench.samples("train")                    # hrrkit.data.layouts.Sample objects

See ``docs/mini_benchmark.md`` for how it is built and what it can and cannot tell, and
``docs/wild_benchmark.md`` for the wild benchmark (real generators' outputs, ``build_wild_benchmark``).
"""

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
from hrrkit.datasets.sources import PHOTOGRAPHS, SourceUnavailableError
from hrrkit.datasets.wild import WildBenchmark, WildConfig, build_wild_benchmark

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
    "WildBenchmark",
    "WildConfig",
    "GeneratorSpec",
    "LoadedGenerator",
    "MiniBenchmark",
    "MiniBenchmarkConfig",
    "SourceUnavailableError",
    "WeightsUnavailableError",
    "build_mini_benchmark",
    "build_wild_benchmark",
    "default_cache_root",
    "load_generator",
    "sample_images",
]
