"""Time every variant of a benchmark case and write JSON rows (design.md §7).

Variants: ``eager`` (reference), ``compiled`` (``torch.compile(reference)``), ``fused`` (Triton).
Modes: ``fwd``, ``bwd`` (backward only, graph kept), ``fwd+bwd``. On CUDA, times come from
``triton.testing.do_bench`` (median and 20/80 % quantiles, after warm-up); on CPU from
``torch.utils.benchmark.Timer.blocked_autorange``. Fused kernels are never timed on CPU (the Triton
interpreter proves correctness, not speed), and a timing is refused under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import hrrkit
from hrrkit.bench.registry import BenchCase, bench_cases
from hrrkit.ops._dispatch import interpreter_enabled

VARIANTS = ("eager", "compiled", "fused")
MODES = ("fwd", "bwd", "fwd+bwd")


@dataclass
class BenchRow:
    """One timed (op, size, dtype, variant, mode). Times in milliseconds, memory in bytes."""

    op: str
    size_name: str
    shape: dict[str, int]
    dtype: str
    variant: str
    mode: str
    median_ms: float | None
    p20_ms: float | None
    p80_ms: float | None
    gbps: float | None
    tflops: float | None
    bytes_moved: int
    peak_mem_bytes: int | None
    device: str
    device_name: str
    torch_version: str
    triton_version: str | None
    hrrkit_version: str
    commit: str | None
    timer: str
    error: str | None = None
    timestamp: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def git_commit() -> str | None:
    """The commit of the source tree hrrkit runs from, if it is a git checkout."""
    here = Path(hrrkit.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # Linux names the CPU model here; platform.processor() is often empty
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def triton_version() -> str | None:
    try:
        import triton

        return triton.__version__
    except Exception:
        return None


def _outputs(result: Any) -> list[torch.Tensor]:
    items = result if isinstance(result, (tuple, list)) else [result]
    return [t for t in items if isinstance(t, torch.Tensor) and t.requires_grad]


def make_callable(case: BenchCase, impl: Callable[..., Any], inputs: dict[str, Any], mode: str) -> Callable[[], Any]:
    """A no-argument callable that runs ``mode`` of ``impl`` on ``inputs``."""
    leaves = [inputs[name] for name in case.grad_inputs]
    if mode == "fwd":
        return lambda: impl(**inputs)
    if mode == "fwd+bwd":

        def fwd_bwd():
            outs = _outputs(impl(**inputs))
            return torch.autograd.grad(outs, leaves, [torch.ones_like(o) for o in outs])

        return fwd_bwd
    outs = _outputs(impl(**inputs))
    grads = [torch.ones_like(o) for o in outs]
    return lambda: torch.autograd.grad(outs, leaves, grads, retain_graph=True)


def time_callable(fn: Callable[[], Any], device: torch.device, min_run_time: float = 0.2) -> tuple[float, float, float, str]:
    """(median, p20, p80) in milliseconds and the timer's name."""
    if device.type == "cuda":
        import triton.testing

        q = triton.testing.do_bench(fn, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8])
        return float(q[0]), float(q[1]), float(q[2]), "triton.testing.do_bench"
    from torch.utils import benchmark

    fn()  # warm-up (and any lazy initialisation)
    m = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time
    )
    times = sorted(m.times)
    pick = lambda q: times[min(int(q * len(times)), len(times) - 1)] * 1e3  # noqa: E731
    return m.median * 1e3, pick(0.2), pick(0.8), "torch.utils.benchmark"


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence the profiler's native start/stop chatter on file descriptor 2."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Bytes allocated at the peak of one call of ``fn`` beyond what was allocated before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return int(peak)


def run_case(
    case: BenchCase,
    *,
    size_name: str,
    device: torch.device,
    dtype: torch.dtype,
    variants: Sequence[str] = VARIANTS,
    modes: Sequence[str] = MODES,
    min_run_time: float = 0.2,
    on_row: Callable[[BenchRow], None] | None = None,
) -> list[BenchRow]:
    """Time ``case`` at one size and dtype for every variant × mode; errors become rows with ``error``."""
    size = dict(case.sizes[size_name])
    impls: dict[str, Callable[..., Any] | None] = {"eager": case.reference}
    if "compiled" in variants:
        impls["compiled"] = torch.compile(case.reference)
    if "fused" in variants:
        impls["fused"] = case.fused
    meta = dict(
        device=str(device), device_name=device_name(device), torch_version=torch.__version__,
        triton_version=triton_version(), hrrkit_version=hrrkit.__version__, commit=git_commit(),
    )
    rows: list[BenchRow] = []
    for variant in variants:
        impl = impls.get(variant)
        for mode in modes:
            nbytes = int(case.bytes_moved(size, dtype, mode))
            row = BenchRow(
                op=case.name, size_name=size_name, shape=size, dtype=str(dtype).replace("torch.", ""),
                variant=variant, mode=mode, median_ms=None, p20_ms=None, p80_ms=None, gbps=None,
                tflops=None, bytes_moved=nbytes, peak_mem_bytes=None, timer="", timestamp=time.time(), **meta,
            )
            try:
                if impl is None:
                    raise RuntimeError(f"no {variant} implementation registered for '{case.name}'")
                if variant == "fused" and device.type != "cuda":
                    raise RuntimeError("fused kernels are timed on CUDA only (the CPU interpreter is not a timing)")
                if variant == "fused" and interpreter_enabled():
                    raise RuntimeError("TRITON_INTERPRET=1 is set: an interpreted kernel's time is not a timing")
                inputs = case.make_inputs(size, device, dtype)
                fn = make_callable(case, impl, inputs, mode)
                med, p20, p80, timer = time_callable(fn, device, min_run_time)
                row.median_ms, row.p20_ms, row.p80_ms, row.timer = med, p20, p80, timer
                row.gbps = nbytes / (med * 1e-3) / 1e9
                if case.flops is not None:
                    row.tflops = case.flops(size, mode) / (med * 1e-3) / 1e12
                row.peak_mem_bytes = peak_memory(fn, device)
            except Exception as exc:  # a failing variant is reported, the others still run
                row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def measure_copy_bandwidth(device: torch.device, nbytes: int = 1 << 30) -> dict[str, Any]:
    """Device-to-device copy bandwidth (read + write bytes per second): the practical ceiling."""
    n = nbytes // 4
    src = torch.empty(n, device=device, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    med, p20, p80, timer = time_callable(lambda: dst.copy_(src), device, 0.5)
    return {
        "op": "copy", "bytes": 2 * n * 4, "median_ms": med, "gbps": 2 * n * 4 / (med * 1e-3) / 1e9,
        "device_name": device_name(device), "timer": timer,
    }


def ratio_table(rows: Iterable[BenchRow]) -> list[dict[str, Any]]:
    """Per (op, size, dtype, mode): eager, compiled and fused medians and the speed-up ratios."""
    groups: dict[tuple, dict[str, BenchRow]] = {}
    for r in rows:
        groups.setdefault((r.op, r.size_name, r.dtype, r.mode), {})[r.variant] = r
    table = []
    for (op, size_name, dtype, mode), by_variant in groups.items():
        t = lambda v: by_variant[v].median_ms if v in by_variant else None  # noqa: E731
        eager, compiled, fused = t("eager"), t("compiled"), t("fused")
        best = fused if fused is not None else None
        table.append(
            {
                "op": op, "size": size_name, "dtype": dtype, "mode": mode,
                "eager_ms": eager, "compiled_ms": compiled, "fused_ms": fused,
                "fused_vs_eager": eager / fused if eager and fused else None,
                "fused_vs_compiled": compiled / fused if compiled and fused else None,
                "compiled_vs_eager": eager / compiled if eager and compiled else None,
                "fused_gbps": by_variant["fused"].gbps if "fused" in by_variant and best else None,
                "peak_mem_eager": by_variant["eager"].peak_mem_bytes if "eager" in by_variant else None,
                "peak_mem_fused": by_variant["fused"].peak_mem_bytes if "fused" in by_variant else None,
            }
        )
    return table


def format_table(table: list[dict[str, Any]], bandwidth_gbps: float | None = None) -> str:
    """A plain-text table a person can read."""
    fmt = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
    header = ["op", "size", "dtype", "mode", "eager ms", "compiled ms", "fused ms", "×eager", "×compiled", "GB/s"]
    if bandwidth_gbps:
        header.append("% of copy BW")
    header += ["peak MB eager", "peak MB fused"]
    lines = []
    for r in table:
        cells = [
            r["op"], r["size"], r["dtype"], r["mode"], fmt(r["eager_ms"], ".4f"), fmt(r["compiled_ms"], ".4f"),
            fmt(r["fused_ms"], ".4f"), fmt(r["fused_vs_eager"], ".2f"), fmt(r["fused_vs_compiled"], ".2f"),
            fmt(r["fused_gbps"], ".1f"),
        ]
        if bandwidth_gbps:
            share = None if r["fused_gbps"] is None else 100 * r["fused_gbps"] / bandwidth_gbps
            cells.append(fmt(share, ".0f"))
        mb = lambda b: None if b is None else b / 1e6  # noqa: E731
        cells += [fmt(mb(r["peak_mem_eager"]), ".2f"), fmt(mb(r["peak_mem_fused"]), ".2f")]
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    render = lambda cells: "  ".join(str(c).rjust(w) if i > 3 else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths])] + [render(c) for c in lines])


def run_benchmarks(
    ops: Sequence[str] | None,
    *,
    device: torch.device,
    dtypes: Sequence[torch.dtype] | None = None,
    size_name: str | None = None,
    variants: Sequence[str] = VARIANTS,
    modes: Sequence[str] = MODES,
    out: Path | None = None,
    min_run_time: float = 0.2,
    progress: bool = True,
) -> list[BenchRow]:
    """Run the named cases (all when ``ops`` is None); append JSON rows to ``out`` as they come."""
    cases = bench_cases()
    unknown = [o for o in (ops or []) if o not in cases]
    if unknown:
        raise KeyError(f"unknown benchmark op(s) {unknown}; registered: {sorted(cases)}")
    selected = [cases[o] for o in (ops or sorted(cases))]
    size_name = size_name or ("target" if device.type == "cuda" else "cpu")
    rows: list[BenchRow] = []
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    jobs = [(c, dt) for c in selected for dt in (dtypes or c.dtypes) if dt in c.dtypes]
    bar = tqdm(total=len(jobs) * len(variants) * len(modes), desc="bench", unit="timing", disable=not progress)

    def on_row(row: BenchRow) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{row.op} {row.variant} {row.mode}")
        if out is not None:
            with open(out, "a") as fh:
                fh.write(row.to_json() + "\n")

    for case, dt in jobs:
        sname = size_name if size_name in case.sizes else next(iter(case.sizes))
        rows += run_case(
            case, size_name=sname, device=device, dtype=dt, variants=variants, modes=modes,
            min_run_time=min_run_time, on_row=on_row,
        )
    bar.close()
    return rows
