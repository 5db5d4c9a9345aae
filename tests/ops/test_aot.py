"""Every fused kernel compiles ahead of time for sm_90 with no register spills (issue 20).

Runs ``hrrkit kernels --arch sm_90 --subset ci`` in a fresh process (the AOT path needs Triton
imported without ``TRITON_INTERPRET``) with a per-session Triton cache, so the compiled artifacts
are reused by anything else in the session and never by a later session. ``nox -s kernels`` runs
the full set for sm_80 and sm_90; ``nox -s kernels-triton36`` does so on Triton 3.6.
"""

from __future__ import annotations

import json
import os

import pytest

from hrrkit.bench import aot

triton = pytest.importorskip("triton")


@pytest.fixture(scope="session")
def sm90_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("aot")
    env_cache = os.environ.get("TRITON_CACHE_DIR")
    os.environ["TRITON_CACHE_DIR"] = str(out / "triton-cache")
    try:
        proc = aot.run_subprocess(["--arch", "sm_90", "--subset", "ci", "--json", str(out / "report.json")],
                                  timeout=900)
    finally:
        if env_cache is None:
            os.environ.pop("TRITON_CACHE_DIR", None)
        else:
            os.environ["TRITON_CACHE_DIR"] = env_cache
    if not (out / "report.json").exists():
        pytest.fail(f"hrrkit kernels did not write its report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc, json.loads((out / "report.json").read_text())


def test_every_kernel_compiles_for_sm90_without_spills(sm90_report):
    proc, rep = sm90_report
    assert not aot.problems(rep), "\n".join(aot.problems(rep))
    assert proc.returncode == 0, proc.stderr[-3000:]
    kernels = {r["kernel"] for r in rep["rows"]}
    for name in ("_correntropy_fwd_kernel", "_correntropy_bwd_kernel", "_additive_fwd_bspline_kernel",
                 "_additive_fwd_rbf_kernel", "_additive_bwd_kernel", "_vpass", "_hpass", "_moments_fwd_kernel",
                 "_moments_bwd_kernel"):
        assert name in kernels, f"{name} was never launched by the AOT scenarios"


def test_no_kernel_lowers_fp32_dot_to_scalar_fma(sm90_report):
    _, rep = sm90_report
    assert not [r for r in rep["rows"] if r["ok"] and r["dot"].startswith("fma")]


def test_recorded_launches_fit_cuda_grid_limits():
    launches = aot.collect_launches(subset="ci")
    assert not aot.grid_problems(launches)
    # the recorder sees the launchers' own constexprs, e.g. the three epilogues of the horizontal pass
    modes = {dict(launch.constexprs).get("MODE") for launch in launches if launch.kernel == "_hpass"}
    assert modes == {0, 1, 2}


def test_problems_flags_spills_smem_and_errors():
    row = dict(kernel="k", specialisation="s", arch="sm_80", ok=True, spill_bytes=8, registers=255,
               shared_bytes=200_000, shared_limit=163 * 1024, shared_ok=False)
    rep = {"grid_problems": [], "rows": [row, dict(row, ok=False, error="boom")]}
    found = aot.problems(rep)
    assert any("spills" in p for p in found) and any("shared memory" in p for p in found)
    assert any("compile error boom" in p for p in found)
    assert aot.problems(rep, allow_spills={"k": "measured harmless"}) != found


def test_occupancy_estimate():
    assert aot.occupancy(90, 32, 4, 0) == 1.0
    assert aot.occupancy(90, 255, 4, 0) == pytest.approx(0.125)  # 2 blocks of 4 warps
    assert aot.occupancy(80, 32, 4, 100 * 1024) == pytest.approx(4 / 64)  # one block by shared memory
