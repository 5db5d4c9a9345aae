"""The dispatch mechanism shared by every fused op (design.md §5)."""

from __future__ import annotations

import pytest
import torch

from hrrkit.ops import FusedUnavailableError, op_table, registered_ops, resolve_impl
from hrrkit.ops._dispatch import device_reasons


@pytest.fixture
def no_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("HRRKIT_IMPL", raising=False)
    monkeypatch.delenv("HRRKIT_IMPL_CORRENTROPY", raising=False)


def test_builtin_ops_are_registered():
    assert "correntropy" in registered_ops()


def test_reference_is_always_reference(no_interpreter):
    assert resolve_impl("correntropy", "reference", [torch.zeros(2), torch.zeros(2)]) == "reference"


def test_auto_on_cpu_without_interpreter_is_reference(no_interpreter):
    assert resolve_impl("correntropy", "auto", [torch.zeros(2), torch.zeros(2)]) == "reference"


def test_auto_on_cpu_with_interpreter_is_still_reference(no_interpreter, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_impl("correntropy", "auto", [torch.zeros(2), torch.zeros(2)]) == "reference"
    assert resolve_impl("correntropy", "triton", [torch.zeros(2), torch.zeros(2)]) == "triton"


def test_explicit_triton_never_falls_back(no_interpreter):
    with pytest.raises(FusedUnavailableError) as info:
        resolve_impl("correntropy", "triton", [torch.zeros(2), torch.zeros(2)])
    assert info.value.op == "correntropy"
    assert any("TRITON_INTERPRET" in r for r in info.value.reasons)
    assert "impl='reference'" in str(info.value)


def test_global_env_override_applies_to_auto_only(no_interpreter, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("HRRKIT_IMPL", "reference")
    t = [torch.zeros(2), torch.zeros(2)]
    assert resolve_impl("correntropy", "auto", t) == "reference"
    assert resolve_impl("correntropy", "triton", t) == "triton"  # an explicit argument wins


def test_per_op_env_beats_global(no_interpreter, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("HRRKIT_IMPL", "reference")
    monkeypatch.setenv("HRRKIT_IMPL_CORRENTROPY", "triton")
    assert resolve_impl("correntropy", "auto", [torch.zeros(2), torch.zeros(2)]) == "triton"


def test_env_forcing_triton_raises_when_impossible(no_interpreter, monkeypatch):
    monkeypatch.setenv("HRRKIT_IMPL_CORRENTROPY", "triton")
    with pytest.raises(FusedUnavailableError):
        resolve_impl("correntropy", "auto", [torch.zeros(2), torch.zeros(2)])


def test_bad_env_value_names_the_variable(no_interpreter, monkeypatch):
    monkeypatch.setenv("HRRKIT_IMPL", "fast")
    with pytest.raises(ValueError, match="HRRKIT_IMPL"):
        resolve_impl("correntropy", "auto", [torch.zeros(2), torch.zeros(2)])


def test_unknown_op_and_impl():
    with pytest.raises(KeyError, match="unknown hrrkit op"):
        resolve_impl("nope", "auto", [torch.zeros(1)])
    with pytest.raises(ValueError, match="expected one of"):
        resolve_impl("correntropy", "gpu", [torch.zeros(1)])


def test_unsupported_dtype_and_mixed_devices_are_reasons(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(FusedUnavailableError, match="float64"):
        resolve_impl("correntropy", "triton", [torch.zeros(2, dtype=torch.float64), torch.zeros(2)])
    assert resolve_impl("correntropy", "auto", [torch.zeros(2, dtype=torch.float64)] * 2) == "reference"


def test_meta_device_is_not_supported():
    assert any("not supported" in r for r in device_reasons(torch.device("meta")))


def test_op_table_reports_each_op(no_interpreter):
    rows = {r["op"]: r for r in op_table("cpu")}
    assert rows["correntropy"]["auto"] == "reference"
    assert "TRITON_INTERPRET" in rows["correntropy"]["why"]


def test_auto_dispatch_compiles_without_graph_breaks(no_interpreter):
    from hrrkit.ops import correntropy_loss

    f, y = torch.randn(16), torch.ones(16)
    # backend="eager" runs only Dynamo's tracing: fullgraph=True fails on any graph break
    compiled = torch.compile(lambda a, b: correntropy_loss(a, b, 1.5), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(f, y), correntropy_loss(f, y, 1.5))


def test_reference_ops_do_not_import_the_kernels():
    """Geometry and filter taps live in hrrkit.ops; kernels receive them (issue 12): importing the
    ops, and running every reference, loads no hrrkit.kernels module."""
    import subprocess
    import sys

    code = (
        "import sys, torch, hrrkit.ops as o\n"
        "x = torch.rand(1, 2, 9, 8)\n"
        "o.line_enhance(x, impl='reference'); o.multilevel_moments(x, impl='reference')\n"
        "o.additive_expand(torch.rand(3, 4), torch.rand(4, 6), impl='reference')\n"
        "o.correntropy_loss(torch.rand(5), torch.ones(5), impl='reference')\n"
        "print(sorted(m for m in sys.modules if m.startswith('hrrkit.kernels')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
