"""The built wheel maps kernels/ to hrrkit.kernels and installs no top-level `kernels` module."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contents(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("hrrkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hrrkit/kernels/__init__.py" in names
    assert "hrrkit/kernels/correntropy.py" in names
    assert "hrrkit/py.typed" in names
    tops = {n.split("/")[0] for n in names}
    assert "kernels" not in tops
    kernel_files = {p.name for p in (ROOT / "kernels").glob("*.py")}
    assert kernel_files <= {Path(n).name for n in names if n.startswith("hrrkit/kernels/")}
    # every source package is in the wheel (a new subpackage must be listed in pyproject.toml)
    source_packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "hrrkit").rglob("__init__.py")}
    wheel_packages = {Path(n).parent.as_posix() for n in names if n.endswith("__init__.py")}
    assert source_packages <= wheel_packages, source_packages - wheel_packages
    assert "hrrkit/app/__init__.py" in names
    # every data file the code loads from the package (shipped weights and their training records, the
    # py.typed marker) is in the wheel: a data-only folder such as hrrkit/retrospect/weights has no
    # __init__.py, so the check above cannot see it; it needs its packages and package-data entries
    data_files = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "hrrkit").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    }
    assert "hrrkit/retrospect/weights/real-photo-unet.safetensors" in data_files
    assert data_files <= set(names), sorted(data_files - set(names))


def test_kernels_import_as_subpackage():
    import hrrkit.kernels

    assert Path(hrrkit.kernels.__file__).parent.name == "kernels"
