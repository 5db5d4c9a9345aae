"""Ahead-of-time compilation of every fused-kernel specialisation for a GPU target, without a GPU.

``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", arch, 32))`` runs
the whole Triton → PTX → ``ptxas`` pipeline on a CPU-only machine (the Triton wheel ships ``ptxas``
and ``cuobjdump``). This module

1. **records** the launches hrrkit's autograd Functions make for representative inputs
   (:data:`SCENARIOS`: every dtype, every constexpr branch, the block sizes the launchers choose
   for the design.md §7 shapes), by running them on ``meta`` tensors with every ``@triton.jit``
   kernel of the module swapped for a recorder — so the specialisations are the launchers' own,
   not a hand-written copy;
2. **compiles** each distinct specialisation for each requested arch, and
3. **reads** registers, spill bytes and shared memory from the ``ptxas -v`` report of the PTX
   Triton produced, and what ``tl.dot`` lowered to from the SASS (``HGMMA`` = wgmma, ``HMMA`` = mma,
   none = scalar FMA).

It must run in a process where Triton was imported *without* ``TRITON_INTERPRET=1`` (under the
interpreter ``@triton.jit`` returns interpreted functions that cannot be compiled); the tests and
the CLI therefore run it in a fresh subprocess (:func:`run_subprocess`).

Differences from a real launch, on purpose: integer arguments equal to 1 become constants (as Triton
specialises them), but no pointer-alignment or divisible-by-16 hints are passed, so the figures are
those of the generic (unaligned) variant — the conservative one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

#: Per-arch limits used for the launch checks and the occupancy estimate (CUDA programming guide,
#: "Compute capabilities" table): shared memory per block (opt-in maximum) and per SM, registers
#: and warps per SM, and the grid's y/z limit.
ARCH_LIMITS: dict[int, dict[str, int]] = {
    80: {"smem_per_block": 163 * 1024, "smem_per_sm": 164 * 1024, "regs_per_sm": 65536, "warps_per_sm": 64,
         "blocks_per_sm": 32},
    90: {"smem_per_block": 227 * 1024, "smem_per_sm": 228 * 1024, "regs_per_sm": 65536, "warps_per_sm": 64,
         "blocks_per_sm": 32},
}
GRID_YZ_LIMIT = 65535
GRID_X_LIMIT = 2**31 - 1

_TORCH_TO_TRITON = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float64: "fp64",
    torch.int32: "i32",
    torch.int64: "i64",
    torch.int8: "i8",
    torch.uint8: "u8",
    torch.bool: "i1",
}


@dataclasses.dataclass(frozen=True)
class Launch:
    """One recorded kernel launch, reduced to what selects a compiled specialisation."""

    module: str
    kernel: str
    signature: tuple[tuple[str, str], ...]  # (arg name, triton type or "constexpr")
    constexprs: tuple[tuple[str, Any], ...]
    num_warps: int
    num_stages: int
    grid: tuple[int, ...]
    scenario: str

    def key(self) -> tuple:
        return (self.module, self.kernel, self.signature, self.constexprs, self.num_warps, self.num_stages)

    def label(self) -> str:
        """Short human-readable specialisation: pointer dtypes and constexpr values."""
        ptrs = sorted({t[1:] for _, t in self.signature if t.startswith("*")})
        parts = ["/".join(ptrs)] + [f"{k}={v}" for k, v in self.constexprs if v is not None]
        return " ".join(parts) + f" w{self.num_warps}"


class _Recorder:
    """Stands in for a JITFunction: ``rec[grid](*args, **kwargs)`` records instead of launching."""

    def __init__(self, module: str, name: str, kernel, sink: list, scenario: str):
        self.module, self.name, self.sink, self.scenario = module, name, sink, scenario
        self.arg_names = list(kernel.arg_names)
        self.constexpr_names = _constexpr_names(kernel)

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            num_warps = int(kwargs.pop("num_warps", 4))
            num_stages = int(kwargs.pop("num_stages", 3))
            values = dict(zip(self.arg_names, args))
            values.update(kwargs)
            missing = [a for a in self.arg_names if a not in values]
            if missing:
                raise TypeError(f"{self.name}: launch without arguments {missing}")
            signature, constexprs = [], []
            for arg in self.arg_names:
                if arg in self.constexpr_names:
                    kind, value = "constexpr", values[arg]
                else:
                    kind, value = _triton_type(values[arg])
                signature.append((arg, kind))
                if kind == "constexpr":
                    constexprs.append((arg, value))
            g = tuple(int(v) for v in (grid(values) if callable(grid) else grid))
            self.sink.append(
                Launch(self.module, self.name, tuple(signature), tuple(constexprs), num_warps, num_stages, g,
                       self.scenario)
            )

        return launch


def _constexpr_names(kernel) -> set[str]:
    """Names of the ``tl.constexpr`` parameters of a JITFunction (or, under the interpreter, of
    the InterpretedFunction's Python function, read from its annotations)."""
    if hasattr(kernel, "params"):
        return {p.name for p in kernel.params if p.is_constexpr}
    import inspect

    import triton.language as tl

    params = inspect.signature(kernel.fn).parameters.values()
    return {p.name for p in params if p.annotation is tl.constexpr or "constexpr" in str(p.annotation)}


def _triton_type(value) -> tuple[str, Any]:
    if isinstance(value, torch.Tensor):
        return "*" + _TORCH_TO_TRITON[value.dtype], None
    if isinstance(value, bool):
        return "constexpr", value
    if isinstance(value, int):
        if value == 1:  # Triton specialises integer 1 to a constant
            return "constexpr", 1
        return ("i32" if -(2**31) <= value < 2**31 else "i64"), None
    if isinstance(value, float):
        return "fp32", None
    if value is None:
        return "constexpr", None
    raise TypeError(f"cannot type kernel argument {value!r}")


def _is_kernel(obj) -> bool:
    return hasattr(obj, "arg_names") and hasattr(obj, "run") and hasattr(obj, "__getitem__")


@contextlib.contextmanager
def recording(module_name: str, sink: list, scenario: str) -> Iterator[None]:
    """Swap every kernel of ``module_name`` for a :class:`_Recorder` while the block runs."""
    module = importlib.import_module(module_name)
    saved = {name: obj for name, obj in vars(module).items() if _is_kernel(obj)}
    try:
        for name, obj in saved.items():
            setattr(module, name, _Recorder(module_name, name, obj, sink, scenario))
        yield
    finally:
        for name, obj in saved.items():
            setattr(module, name, obj)


# ------------------------------------------------------------------- scenarios

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
META = torch.device("meta")


def _leaf(shape, dtype, grad=True):
    return torch.empty(shape, device=META, dtype=dtype).requires_grad_(grad)


def _run_fwd_bwd(out, inputs):
    outs = out if isinstance(out, tuple) else (out,)
    grads = [torch.empty_like(o) for o in outs]
    torch.autograd.grad(outs, [t for t in inputs if t.requires_grad], grads, allow_unused=True)


def _correntropy_scenarios():
    from hrrkit.kernels.correntropy import CorrentropyLossFunction

    for dtype in DTYPES:
        for reduction in ("mean", "none"):
            for grad_y in (False, True):
                name = f"correntropy {dtype_name(dtype)} {reduction} grad_y={grad_y}"

                def run(dtype=dtype, reduction=reduction, grad_y=grad_y):
                    f, y = _leaf((1 << 24,), dtype), _leaf((1 << 24,), dtype, grad_y)
                    _run_fwd_bwd(CorrentropyLossFunction.apply(f, y, 1.0, reduction), [f, y])

                yield "hrrkit.kernels.correntropy", name, run


def _additive_scenarios():
    from hrrkit.kernels.additive_expand import AdditiveExpandFunction

    for dtype in DTYPES:
        for basis in ("bspline", "rbf"):
            for extrapolation in ("clamp", "linear"):
                for k in (8, 16, 64):
                    for need in ("both", "h", "beta"):
                        name = f"additive {dtype_name(dtype)} {basis} {extrapolation} K={k} grad={need}"

                        def run(dtype=dtype, basis=basis, extrapolation=extrapolation, k=k, need=need):
                            h = _leaf((256, 2048), dtype, need in ("both", "h"))
                            beta = _leaf((2048, k), dtype, need in ("both", "beta"))
                            g = AdditiveExpandFunction.apply(h, beta, basis, -1.0, 1.0, None, extrapolation)
                            _run_fwd_bwd(g, [h, beta])

                        yield "hrrkit.kernels.additive_expand", name, run


def _line_enhance_scenarios():
    from hrrkit.kernels.line_enhance import line_enhance_fused
    from hrrkit.ops.line_enhance import composed_taps

    # (σ₁, σ₂, truncate): the MSR default (halo 6), a wide one (halo 15) and the largest halo the
    # dispatch accepts (FUSED_MAX_HALO = 48)
    for dtype in DTYPES:
        for s1, s2, trunc in ((1.0, 1.0, 3.0), (2.0, 3.0, 3.0), (8.0, 8.0, 3.0)):
            name = f"line_enhance {dtype_name(dtype)} sigma=({s1},{s2}) truncate={trunc}"

            def run(dtype=dtype, s1=s1, s2=s2, trunc=trunc):
                x = _leaf((32, 3, 512, 512), dtype)
                _run_fwd_bwd(line_enhance_fused(x, composed_taps(s1, 1.0, s2, trunc), 0.5, 1e-6), [x])

            yield "hrrkit.kernels.line_enhance", name, run


def _moments_scenarios():
    from hrrkit.kernels.multilevel_moments import multilevel_moments_fused, residual_multilevel_moments_fused
    from hrrkit.ops.moments import DEFAULT_LEVELS, atom_geometry

    for dtype in DTYPES:
        for residual, need_b in ((False, False), (True, False), (True, True)):
            name = f"moments {dtype_name(dtype)} residual={residual} grad_b={need_b}"

            def run(dtype=dtype, residual=residual, need_b=need_b):
                a = _leaf((64, 256, 56, 56), dtype)
                geometry = atom_geometry(56, 56, DEFAULT_LEVELS)
                if residual:
                    b = _leaf((64, 256, 56, 56), dtype, need_b)
                    _run_fwd_bwd(residual_multilevel_moments_fused(a, b, geometry), [a, b])
                else:
                    _run_fwd_bwd(multilevel_moments_fused(a, geometry), [a])

            yield "hrrkit.kernels.multilevel_moments", name, run


SCENARIOS: dict[str, Callable[[], Iterator]] = {
    "correntropy": _correntropy_scenarios,
    "additive_expand": _additive_scenarios,
    "line_enhance": _line_enhance_scenarios,
    "moments": _moments_scenarios,
}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


#: Scenarios the quick ``ci`` subset leaves out: fp16 (the same code as bf16 but for the convert
#: instructions), K = 8 (between K = 16 and the K = 64 worst case) and the middle halo 15 (between
#: 6 and the largest, 48). Every kernel and every constexpr branch stays in.
CI_SKIP = {"float16", "K=8", "sigma=(2.0,3.0)"}  # whole words of the scenario name
SUBSETS = ("full", "ci")


def collect_launches(ops: list[str] | None = None, subset: str = "full") -> list[Launch]:
    """Every distinct launch the scenarios make (first scenario that made it kept)."""
    unknown = sorted(set(ops or []) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; choose from {sorted(SCENARIOS)}")
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; choose from {SUBSETS}")
    launches: list[Launch] = []
    for op in ops or list(SCENARIOS):
        for module, scenario, run in SCENARIOS[op]():
            if subset == "ci" and CI_SKIP & set(scenario.split()):
                continue
            with recording(module, launches, scenario):
                run()
    seen, unique = set(), []
    for launch in launches:
        if launch.key() not in seen:
            seen.add(launch.key())
            unique.append(launch)
    return unique


def grid_problems(launches: list[Launch]) -> list[str]:
    """Launches whose grid exceeds CUDA's limits (x < 2³¹, y and z <= 65,535)."""
    problems = []
    for launch in launches:
        g = launch.grid + (1,) * (3 - len(launch.grid))
        if g[0] > GRID_X_LIMIT or g[1] > GRID_YZ_LIMIT or g[2] > GRID_YZ_LIMIT:
            problems.append(f"{launch.kernel} in '{launch.scenario}': grid {launch.grid} exceeds CUDA limits")
    return problems


# ------------------------------------------------------------------- compiling


def _bin(tool: str) -> str:
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / tool
    if not path.exists():
        raise FileNotFoundError(f"{tool} not found at {path}: the Triton wheel should ship it")
    return str(path)


_PTXAS_RE = {
    "registers": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "smem_static": re.compile(r"(\d+) bytes smem"),
}


def _ptxas_path(arch: int) -> str:
    """The ptxas Triton itself uses for ``arch`` (Triton 3.9 picks a newer one for sm_90+)."""
    from triton.backends.nvidia import compiler as nv

    try:
        return nv.get_ptxas(arch).path
    except TypeError:  # older Triton: one ptxas for every arch
        return nv.get_ptxas().path


def _ptxas_report(ptx: str, arch: int) -> dict[str, int]:
    """Re-run ptxas -v on Triton's PTX (Triton discards the log) and parse its resource lines."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        base = [_ptxas_path(arch), "-v", f"--gpu-name=sm_{arch}{'a' if arch == 90 else ''}", str(src), "-o",
                str(Path(tmp) / "k.cubin")]
        proc = subprocess.run(base[:2] + ["--regAllocOptLevel=2"] + base[2:], capture_output=True, text=True)
        if proc.returncode != 0 and "regAllocOptLevel" in proc.stderr:  # an older ptxas
            proc = subprocess.run(base, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed: {proc.stderr[-2000:]}")
    return _parse_ptxas(proc.stderr) or {key: 0 for key in _PTXAS_RE}


def _parse_ptxas(log: str) -> dict[str, int] | None:
    if not _PTXAS_RE["registers"].search(log):
        return None
    out = {}
    for key, pattern in _PTXAS_RE.items():
        m = pattern.search(log)
        out[key] = int(m.group(1)) if m else 0
    return out


@contextlib.contextmanager
def _ptxas_log_to(sink: io.StringIO) -> Iterator[None]:
    """Make Triton print the ``ptxas -v`` report it otherwise discards (knob in Triton 3.6 and 3.9)."""
    from triton import knobs

    old = knobs.nvidia.dump_ptxas_log
    knobs.nvidia.dump_ptxas_log = True
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        knobs.nvidia.dump_ptxas_log = old


def _dot_lowering(cubin: bytes, ttgir: str) -> str:
    n_dots = ttgir.count("tt.dot ") + ttgir.count("warp_group_dot")
    if n_dots == 0:
        return "none"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        sass = subprocess.run([_bin("cuobjdump"), "-sass", str(path)], capture_output=True, text=True).stdout
    if "HGMMA" in sass:
        return f"wgmma ({n_dots} dot)"
    if "HMMA" in sass:
        return f"mma ({n_dots} dot)"
    return f"fma ({n_dots} dot)"


def occupancy(arch: int, registers: int, num_warps: int, smem: int) -> float:
    """Estimated fraction of the SM's warp slots in use (register, shared-memory and block limits;
    registers are allocated per warp in units of 256)."""
    lim = ARCH_LIMITS[arch]
    regs_per_warp = -(-max(registers, 1) * 32 // 256) * 256
    by_regs = lim["regs_per_sm"] // (regs_per_warp * num_warps)
    by_warps = lim["warps_per_sm"] // num_warps
    by_smem = lim["smem_per_sm"] // (smem + 1024) if smem else lim["blocks_per_sm"]
    blocks = min(by_regs, by_warps, by_smem, lim["blocks_per_sm"])
    return blocks * num_warps / lim["warps_per_sm"]


def compile_one(launch: Launch, arch: int) -> dict[str, Any]:
    """Compile one specialisation for ``sm_<arch>``; the report row (``ok`` false with the error)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    row: dict[str, Any] = {
        "kernel": launch.kernel,
        "module": launch.module,
        "specialisation": launch.label(),
        "scenario": launch.scenario,
        "arch": f"sm_{arch}",
        "num_warps": launch.num_warps,
        "grid": list(launch.grid),
    }
    try:
        fn = getattr(importlib.import_module(launch.module), launch.kernel)
        src = ASTSource(fn, dict(launch.signature), dict(launch.constexprs))
        log = io.StringIO()
        with _ptxas_log_to(log):
            compiled = triton.compile(
                src, target=GPUTarget("cuda", arch, 32),
                options={"num_warps": launch.num_warps, "num_stages": launch.num_stages},
            )
        rep = _parse_ptxas(log.getvalue())
        if rep is None:  # Triton's cache answered, so ptxas did not run: run it on the cached PTX
            rep = _ptxas_report(compiled.asm["ptx"], arch)
        smem = int(compiled.metadata.shared)
        limit = ARCH_LIMITS[arch]["smem_per_block"]
        row.update(
            ok=True,
            error=None,
            registers=rep["registers"],
            spill_bytes=rep["spill_stores"] + rep["spill_loads"],
            spill_stores=rep["spill_stores"],
            stack_bytes=rep["stack"],
            shared_bytes=smem,
            shared_limit=limit,
            shared_ok=smem <= limit,
            dot=_dot_lowering(compiled.asm["cubin"], compiled.asm["ttgir"]),
            occupancy=round(occupancy(arch, rep["registers"], launch.num_warps, smem), 3),
        )
    except Exception as exc:  # noqa: BLE001 - a compile failure is a row of the report, not a crash
        row.update(ok=False, error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}")
    return row


def _compile_star(args):
    return compile_one(*args)


def compile_all(launches: list[Launch], archs: list[int], jobs: int = 1) -> list[dict[str, Any]]:
    work = [(launch, arch) for launch in launches for arch in archs]
    if jobs <= 1:
        return [compile_one(*w) for w in work]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_compile_star, work, chunksize=1))


def report(ops: list[str] | None, archs: list[int], jobs: int = 1, subset: str = "full") -> dict[str, Any]:
    """The whole AOT report: versions, grid checks and one row per (specialisation, arch)."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError(
            "hrrkit kernels: TRITON_INTERPRET is set; ahead-of-time compilation needs the real Triton "
            "compiler. Unset it (e.g. `env -u TRITON_INTERPRET hrrkit kernels`)."
        )
    import triton

    launches = collect_launches(ops, subset)
    rows = compile_all(launches, archs, jobs)
    return {
        "triton": triton.__version__,
        "torch": torch.__version__,
        "ptxas": _ptxas_version(),
        "archs": [f"sm_{a}" for a in archs],
        "subset": subset,
        "grid_problems": grid_problems(launches),
        "rows": rows,
    }


def _ptxas_version() -> str:
    out = subprocess.run([_ptxas_path(90), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release ([\d.]+)", out)
    return m.group(1) if m else out.strip().splitlines()[-1]


def problems(rep: dict[str, Any], allow_spills: dict[str, str] | None = None) -> list[str]:
    """Every row that fails the bar: compile error, a spill not on the allow-list, shared memory
    over the arch's per-block limit; plus the grid problems."""
    allow_spills = allow_spills or {}
    out = list(rep["grid_problems"])
    for r in rep["rows"]:
        where = f"{r['kernel']} [{r['specialisation']}] {r['arch']}"
        if not r["ok"]:
            out.append(f"{where}: compile error {r['error']}")
            continue
        if r["spill_bytes"] and r["kernel"] not in allow_spills:
            out.append(f"{where}: {r['spill_bytes']} bytes of register spills ({r['registers']} registers)")
        if not r["shared_ok"]:
            out.append(f"{where}: {r['shared_bytes']} B shared memory > {r['shared_limit']} B per block")
    return out


def format_table(rep: dict[str, Any]) -> str:
    head = ("kernel", "specialisation", "arch", "ok", "regs", "spill B", "smem B", "dot", "occ.")
    lines = [head]
    for r in rep["rows"]:
        if r["ok"]:
            lines.append((r["kernel"], r["specialisation"], r["arch"], "ok", str(r["registers"]),
                          str(r["spill_bytes"]), str(r["shared_bytes"]), r["dot"], f"{r['occupancy']:.2f}"))
        else:
            lines.append((r["kernel"], r["specialisation"], r["arch"], "ERROR", "", "", "", r["error"][:60], ""))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append(f"\nTriton {rep['triton']}, ptxas {rep['ptxas']}, {len(rep['rows'])} compiles")
    for p in rep["grid_problems"]:
        text.append(f"grid: {p}")
    return "\n".join(text)


def run_subprocess(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m hrrkit kernels ARGS`` in a fresh process without ``TRITON_INTERPRET``."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-m", "hrrkit", "kernels", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def dumps(rep: dict[str, Any]) -> str:
    return json.dumps(rep, indent=1, default=str)


def summary_rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (kernel, arch): specialisations, compile errors, the worst registers, spill
    bytes and shared memory over them, the dot lowerings seen and the lowest occupancy."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rep["rows"]:
        groups.setdefault((r["kernel"], r["arch"]), []).append(r)
    out = []
    for (kernel, arch), rows in groups.items():
        ok = [r for r in rows if r["ok"]]
        out.append({
            "kernel": kernel,
            "arch": arch,
            "specialisations": len(rows),
            "errors": len(rows) - len(ok),
            "max_registers": max((r["registers"] for r in ok), default=None),
            "max_spill_bytes": max((r["spill_bytes"] for r in ok), default=None),
            "max_shared_bytes": max((r["shared_bytes"] for r in ok), default=None),
            "shared_limit": rows[0].get("shared_limit") or ARCH_LIMITS[int(arch[3:])]["smem_per_block"],
            "dot": ", ".join(sorted({r["dot"] for r in ok})) or "-",
            "min_occupancy": min((r["occupancy"] for r in ok), default=None),
        })
    return out


def summary_markdown(rep: dict[str, Any]) -> str:
    """The summary as a Markdown table (docs/kernels.md, benchmarks/results/aot-*/README.md)."""
    lines = [
        "| kernel | arch | specialisations | errors | max registers | max spill B | max shared B (limit) | tl.dot | min occupancy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary_rows(rep):
        lines.append(
            f"| `{s['kernel']}` | {s['arch']} | {s['specialisations']} | {s['errors']} | {s['max_registers']} | "
            f"{s['max_spill_bytes']} | {s['max_shared_bytes']} ({s['shared_limit'] // 1024} KiB) | {s['dot']} | "
            f"{s['min_occupancy']} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------- predictions

#: H100 SXM figures the predictions use: HBM bandwidth (the issue's ~3.0 TB/s, below the 3.35
#: peak), non-tensor fp32 FMA throughput, and a per-launch overhead.
H100 = {"bytes_per_s": 3.0e12, "fp32_flops_per_s": 60e12, "launch_s": 4e-6}


def _cost_model() -> list[dict[str, Any]]:
    """Bytes moved and FLOPs per element of each fused op as the kernels are written (fp32 data,
    each input read once, scratch counted, β/tap tables and per-cell outputs ignored unless large)
    at the design.md §7 sizes."""
    afr_n = 256 * 2048  # B·D, K = 16
    line_n = 32 * 3 * 512 * 512
    mom_n = 64 * 256 * 56 * 56
    corr_n = 1 << 24
    r = 6  # line-enhancement halo at σ₁ = σ₂ = 1, truncate 3
    taps = 2 * r + 1
    splits_bytes = 9 * 2048 * 16 * 4 * 2  # grad-β partials, written and read (H100: 132 SMs)
    return [
        dict(op="additive_expand", mode="fwd", n=afr_n, launches=1, bytes_per_el=8, flops_per_el=30,
             note="read h, write g; 4 gathered coefficients (β stays in L1/L2)"),
        dict(op="additive_expand", mode="bwd", n=afr_n, launches=2, bytes_per_el=12 + splits_bytes / afr_n,
             flops_per_el=90, note="read h and ġ, write ∂h; per-program ∂β partials (D·K per split) summed after"),
        dict(op="line_enhance", mode="fwd", n=line_n, launches=2, bytes_per_el=44, flops_per_el=2 * 8 * taps + 12,
             note="vpass: read x, write 4 fp32 planes; hpass: read 4 planes + x, write x̃"),
        dict(op="line_enhance", mode="bwd", n=line_n, launches=4, bytes_per_el=96, flops_per_el=4 * 8 * taps + 30,
             note="recompute g (x → 4 planes → w_x, w_y), adjoint (w → 4 planes → ∂x), reading ġ twice"),
        dict(op="multilevel_moments", mode="fwd", n=mom_n, launches=1, bytes_per_el=4, flops_per_el=8,
             note="read x once; per-atom statistics (16 atoms at 56×56) are 3 MB"),
        dict(op="multilevel_moments", mode="bwd", n=mom_n, launches=1, bytes_per_el=8, flops_per_el=5,
             note="read x, write ∂x"),
        dict(op="residual_moments", mode="fwd", n=mom_n, launches=1, bytes_per_el=8, flops_per_el=10,
             note="read a and b once; abs(a − b) never written"),
        dict(op="residual_moments", mode="bwd", n=mom_n, launches=1, bytes_per_el=16, flops_per_el=7,
             note="read a and b, write ∂a and ∂b"),
        dict(op="correntropy", mode="fwd", n=corr_n, launches=1, bytes_per_el=8, flops_per_el=12,
             note="read f and y; one partial sum per 1024 elements"),
        dict(op="correntropy", mode="bwd", n=corr_n, launches=1, bytes_per_el=12, flops_per_el=10,
             note="read f and y, write ∂f"),
    ]


def predictions(device: dict[str, float] = H100) -> list[dict[str, Any]]:
    """Predicted fused times (µs) at the design.md §7 sizes, fp32: max(bytes / bandwidth, FLOPs /
    fp32 throughput) plus the launches' overhead. A prediction, to be checked on a GPU."""
    rows = []
    for c in _cost_model():
        mem_s = c["n"] * c["bytes_per_el"] / device["bytes_per_s"]
        flop_s = c["n"] * c["flops_per_el"] / device["fp32_flops_per_s"]
        total = max(mem_s, flop_s) + c["launches"] * device["launch_s"]
        rows.append(dict(
            op=c["op"], mode=c["mode"], dtype="float32", elements=c["n"], bytes_per_element=round(c["bytes_per_el"], 2),
            flops_per_element=c["flops_per_el"], bound="memory" if mem_s >= flop_s else "compute",
            predicted_us=round(total * 1e6, 1), note=c["note"],
        ))
    return rows


def predictions_markdown(rows: list[dict[str, Any]] | None = None) -> str:
    rows = rows or predictions()
    lines = ["| op | mode | elements | bytes/element | FLOPs/element | bound | predicted H100 µs | what moves |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['mode']} | {r['elements']:,} | {r['bytes_per_element']} | "
                     f"{r['flops_per_element']} | {r['bound']} | {r['predicted_us']} | {r['note']} |")
    return "\n".join(lines)
