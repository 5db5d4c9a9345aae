"""The benchmark harness on tiny CPU sizes, so that it cannot rot."""

from __future__ import annotations

import json

import pytest
import torch

from hrrkit.bench.registry import bench_cases
from hrrkit.bench.runner import format_table, make_callable, peak_memory, ratio_table, run_benchmarks


def test_every_case_is_well_formed():
    cases = bench_cases()
    assert "correntropy" in cases
    for name, case in cases.items():
        assert {"tiny", "target"} <= set(case.sizes), name
        for mode in ("fwd", "bwd", "fwd+bwd"):
            assert case.bytes_moved(case.sizes["target"], case.dtypes[0], mode) > 0, (name, mode)


@pytest.mark.parametrize("name", sorted(bench_cases()))
def test_reference_runs_every_mode_on_tiny_size(name):
    case = bench_cases()[name]
    for mode in ("fwd", "bwd", "fwd+bwd"):
        inputs = case.make_inputs(case.sizes["tiny"], torch.device("cpu"), case.dtypes[0])
        make_callable(case, case.reference, inputs, mode)()


def test_run_writes_json_rows_with_provenance(tmp_path):
    out = tmp_path / "rows.jsonl"
    rows = run_benchmarks(
        ["correntropy"], device=torch.device("cpu"), dtypes=[torch.float32], size_name="tiny",
        variants=["eager", "fused"], out=out, min_run_time=0.01, progress=False,
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(rows) == 6
    eager = [r for r in lines if r["variant"] == "eager"]
    assert all(r["median_ms"] > 0 and r["gbps"] > 0 and r["error"] is None for r in eager)
    for key in ("device_name", "torch_version", "triton_version", "commit", "dtype", "shape", "peak_mem_bytes"):
        assert key in eager[0]
    assert eager[0]["shape"] == {"n": 1000}
    # fused kernels are never timed on CPU: an explicit row says why instead of a number
    fused = [r for r in lines if r["variant"] == "fused"]
    assert all(r["median_ms"] is None and "CUDA only" in r["error"] for r in fused)
    text = format_table(ratio_table(rows))
    assert "correntropy" in text and "fwd+bwd" in text


def test_compiled_variant_smoke(tmp_path):
    # the only torch.compile of the suite with inductor (about 30 s per graph on 2 cores)
    rows = run_benchmarks(
        ["correntropy"], device=torch.device("cpu"), dtypes=[torch.float32], size_name="tiny",
        variants=["compiled"], modes=["fwd"], min_run_time=0.01, progress=False,
    )
    assert rows[0].error is None, rows[0].error
    assert rows[0].median_ms > 0


def test_peak_memory_sees_cpu_allocations():
    x = torch.randn(256, 1024)
    peak = peak_memory(lambda: (x * 2).exp(), torch.device("cpu"))
    assert peak >= 2 * x.numel() * 4  # two temporaries of x's size alive at once


def test_unknown_op_is_named():
    with pytest.raises(KeyError, match="unknown benchmark op"):
        run_benchmarks(["nope"], device=torch.device("cpu"), progress=False)
