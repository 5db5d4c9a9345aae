"""Task runner. ``nox -s tests`` is the README's test command and what CI runs.

Sessions that build a virtualenv install the local CPU build of torch (``torch==2.13.0``) first,
so the project's open-ended ``torch>=2.3`` requirement is already satisfied and no multi-GB CUDA
build is pulled. The ``gpu`` session runs on the interpreter it is started from (a GPU machine that
already has torch and triton, with no network): ``nox -s gpu``, or ``bash benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

CPU_TORCH = "torch==2.13.0"
# Example scripts that (re)draw the figures under docs/img/.
DOC_FIGURE_SCRIPTS = ["examples/afr_shape_functions.py", "examples/msr_pictures.py"]



def _install(session: nox.Session, extras: str = "dev") -> None:
    session.install(CPU_TORCH)
    session.install("-e", f".[{extras}]")


@nox.session(python=False, name="tests-here")
def tests_here(session: nox.Session) -> None:
    """The test suite on the current interpreter (no virtualenv)."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite on CPU: fused kernels under TRITON_INTERPRET=1, hypothesis profile `ci`."""
    _install(session, "dev,demo")
    try:
        session.run(
            "python", "-m", "pytest", "-n", "2" if os.cpu_count() and os.cpu_count() > 1 else "0",
            "--durations=15", *session.posargs,
            env={"TRITON_INTERPRET": "1", "HYPOTHESIS_PROFILE": "ci"},
        )
    finally:
        if _browser_missing():  # said last, where it is read: the suite did not run the app in a browser
            session.warn(f"SKIPPED the app's browser test (tests/app/test_app_browser.py): {_browser_missing()}; "
                         "install them as .ci/run does (sudo apt-get install -y chromium chromium-driver) to run it")


def _browser_missing() -> str:
    """What the app's browser test lacks (the same check as its skip), or "" when it can run."""
    import shutil

    missing = [name for name in ("chromium", "chromedriver")
               if not (shutil.which(name) or os.path.exists(f"/usr/bin/{name}"))]
    return f"{' and '.join(missing)} not found" if missing else ""


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "hrrkit", "kernels", "tests", "examples", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Every registered benchmark on this machine (CPU: reference eager and compiled only)."""
    _install(session)
    out = session.posargs[0] if session.posargs else "benchmarks/results/local.jsonl"
    session.run("hrrkit", "bench", "--out", out)


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate the figures the docs show, then check every relative link in docs/ resolves."""
    _install(session, "dev,demo")
    for script in DOC_FIGURE_SCRIPTS:
        if os.path.exists(script):
            session.run("python", script)
    session.run("python", "-m", "pytest", "tests/test_docs.py", "-q")


def _aot(session: nox.Session) -> None:
    """``hrrkit kernels`` for sm_80 and sm_90 into benchmarks/results/aot-<triton>/, then the CI test."""
    version = session.run("python", "-c", "import triton; print(triton.__version__)", silent=True).strip()
    dest = f"benchmarks/results/aot-{version}"
    os.makedirs(dest, exist_ok=True)
    session.run("hrrkit", "kernels", "--arch", "sm_80,sm_90", "--json", f"{dest}/report.json", *session.posargs,
                env={"TRITON_INTERPRET": "0"})
    session.run("python", "-m", "pytest", "tests/ops/test_aot.py", "-q", "-p", "no:cacheprovider")


@nox.session
def kernels(session: nox.Session) -> None:
    """Compile every fused kernel ahead of time for sm_80/sm_90 (no GPU): 0 spills, shared memory
    within each arch's limit; writes benchmarks/results/aot-<triton>/report.json."""
    _install(session)
    _aot(session)


@nox.session(name="kernels-triton36")
def kernels_triton36(session: nox.Session) -> None:
    """The same on Triton 3.6, the GPU machine's version (pinned after hrrkit's own install)."""
    _install(session)
    session.install("triton==3.6.0")
    _aot(session)


@nox.session(python=False)
def gpu(session: nox.Session) -> None:
    """The GPU check: kernel tests with the `gpu` hypothesis profile in fp32/bf16/fp16, then every
    benchmark with the copy-bandwidth ceiling. Runs offline on the current interpreter."""
    session.run("bash", "benchmarks/gpu_check.sh", *session.posargs, external=True)
