"""Shared pytest configuration: --device/--dtype options, hypothesis profiles, interpreter setup.

On CPU (the default) the fused Triton kernels run under ``TRITON_INTERPRET=1``, which Triton reads
when a kernel is decorated, so it is set here before any test module imports ``hrrkit.kernels``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "gpu",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda"), help="device the tests run on")
    parser.addoption(
        "--dtype",
        default="float32,bfloat16",
        help="comma-separated dtypes for the dtype-parametrised kernel tests "
        "(float32, float16, bfloat16, float64), or 'all'",
    )


def pytest_configure(config: pytest.Config) -> None:
    device = config.getoption("--device")
    if device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
        # Triton reads the variable at its first import (its own tl helpers too): import it now, so
        # a test that later unsets the variable cannot make Triton non-interpreted for the rest
        try:
            import triton  # noqa: F401
        except Exception:
            pass
    elif not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda was given but torch.cuda.is_available() is False")
    if device == "cpu":
        # tiny models on a loaded 2-core machine run several times faster on one thread per process
        # (pytest-xdist gives each core its own process)
        torch.set_num_threads(int(os.environ.get("HRRKIT_TEST_THREADS", "1")))
    if config.getoption("--hypothesis-profile", default=None) is None:
        settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gpu" if device == "cuda" else "ci"))


def _dtypes(config: pytest.Config) -> list[torch.dtype]:
    raw = config.getoption("--dtype")
    names = list(DTYPES) if raw == "all" else [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in DTYPES]
    if unknown:
        raise pytest.UsageError(f"--dtype: unknown {unknown}; choose from {list(DTYPES)} or 'all'")
    return [DTYPES[n] for n in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dtype" in metafunc.fixturenames:
        dtypes = _dtypes(metafunc.config)
        metafunc.parametrize("dtype", dtypes, ids=[str(d).replace("torch.", "") for d in dtypes])


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.config.getoption("--device"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
