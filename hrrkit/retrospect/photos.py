"""The catalogue of real photographs that hrrkit can use offline, each with its split role.

Every photograph here is a file inside a pip package (never downloaded at run time), recorded with
its package, path, licence and SHA-256, and given ONE role:

* ``"train"``: the only photographs that training and validation crops (and the fakes regenerated
  from them, and any model trained on real photographs, e.g. the diffusion retrospector of
  ``hrrkit.retrospect``) may come from;
* ``"test"``: held out; only the real half of the wild benchmark's ``test_generators`` split is cut
  from them.

The roles are fixed: changing one would leak test content into someone's training set. The two
frames of scikit-image's stereo pair (``motorcycle_left``/``motorcycle_right``) show the same scene
and share a ``group``, so they are always in the same split.

    from hrrkit.retrospect.photos import source_photographs, load_source_photograph
    for photo in source_photographs(role="train"):
        pixels = load_source_photograph(photo.name)      # uint8 (H, W, 3), SHA-256 checked

A user's own photographs (``real_dirs=[...]``) get their role from their content hash
(:func:`user_photographs`), so the same file always lands in the same split.

The catalogue lives in ``hrrkit.retrospect`` because the shipped retrospector trains on its ``train``
photographs and nothing in ``retrospect/`` imports from ``datasets/`` (data flows one way). The
benchmarks' real photographs come from the much larger pool of :mod:`hrrkit.datasets.photo_pool`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hrrkit.utils.pinned import read_pinned

__all__ = [
    "CATALOGUE",
    "ROLES",
    "USER_TEST_FRACTION",
    "PhotoUnavailableError",
    "SourcePhoto",
    "catalogue_digest",
    "load_source_photograph",
    "photo_path",
    "source_photographs",
    "user_photographs",
]

ROLES = ("train", "test")

#: Share of a user's photographs (by content hash) given the ``test`` role.
USER_TEST_FRACTION = 0.25

_USER_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")


class PhotoUnavailableError(RuntimeError):
    """A catalogue photograph is missing, changed or unreadable; the message names the package and the fix."""


@dataclass(frozen=True)
class SourcePhoto:
    """One real photograph.

    Attributes:
        name: unique short name (``"astronaut"``, ``"china"``, ``"user-<sha256[:12]>"``).
        package: the import name of the pip package that ships it (``"skimage"``), or ``"user"``.
        distribution: the pip name to install (``"scikit-image"``), or ``""`` for a user's file.
        relpath: path of the file inside the package folder (or the absolute path of a user's file).
        licence: the licence or copyright statement as the package records it.
        attribution: photographer or source, as the package records it.
        sha256: SHA-256 of the file's bytes.
        role: ``"train"`` or ``"test"`` (see the module docstring).
        group: photographs of the same scene share a group (and so a role); defaults to ``name``.
    """

    name: str
    package: str
    distribution: str
    relpath: str
    licence: str
    attribution: str
    sha256: str
    role: str
    group: str = ""

    @property
    def scene(self) -> str:
        """The group if set, else the name: no two splits ever share a scene."""
        return self.group or self.name

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


_SKIMAGE = ("skimage", "scikit-image")
_SKLEARN = ("sklearn", "scikit-learn")
_MATPLOTLIB = ("matplotlib", "matplotlib")

#: Every packaged photograph hrrkit uses, with its role. Only colour photographs: a grey one would
#: make "R == G == B" a perfect real-image cue. Licences as stated in each package's docs/README.
CATALOGUE: tuple[SourcePhoto, ...] = (
    SourcePhoto("astronaut", *_SKIMAGE, "data/astronaut.png",
                "public domain (no known copyright restrictions)", "NASA Great Images database",
                "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", "train"),
    SourcePhoto("chelsea", *_SKIMAGE, "data/chelsea.png",
                "CC0", "Stefan van der Walt",
                "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", "train"),
    SourcePhoto("coffee", *_SKIMAGE, "data/coffee.png",
                "CC0", "Rachel Michetti",
                "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", "test"),
    SourcePhoto("hubble_deep_field", *_SKIMAGE, "data/hubble_deep_field.jpg",
                "public domain (NASA media guidelines)", "NASA / HubbleSite",
                "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4", "train"),
    SourcePhoto("ihc", *_SKIMAGE, "data/ihc.png",
                "no known copyright restrictions", "Center for Microscopy And Molecular Imaging (CMMI)",
                "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef", "train"),
    SourcePhoto("motorcycle_left", *_SKIMAGE, "data/motorcycle_left.png",
                "Middlebury 2014 stereo benchmark (free for research use)", "Scharstein et al., Middlebury College",
                "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179", "train", "motorcycle"),
    SourcePhoto("motorcycle_right", *_SKIMAGE, "data/motorcycle_right.png",
                "Middlebury 2014 stereo benchmark (free for research use)", "Scharstein et al., Middlebury College",
                "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797", "train", "motorcycle"),
    SourcePhoto("retina", *_SKIMAGE, "data/retina.jpg",
                "CC0 1.0", "Häggström, Mikael (Wikimedia Commons)",
                "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6", "train"),
    SourcePhoto("rocket", *_SKIMAGE, "data/rocket.jpg",
                "public domain", "SpaceX (DSCOVR launch on Falcon 9)",
                "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", "train"),
    SourcePhoto("china", *_SKLEARN, "datasets/images/china.jpg",
                "CC BY 2.0", "danielbuechele (Flickr)",
                "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29", "test"),
    SourcePhoto("flower", *_SKLEARN, "datasets/images/flower.jpg",
                "CC BY 2.0", "vultilion (Flickr)",
                "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638", "train"),
    SourcePhoto("grace_hopper", *_MATPLOTLIB, "mpl-data/sample_data/grace_hopper.jpg",
                "public domain (US Navy photograph)", "U.S. Navy",
                "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", "test"),
)

_BY_NAME = {photo.name: photo for photo in CATALOGUE}


def source_photographs(role: str | None = "train") -> tuple[SourcePhoto, ...]:
    """The catalogue photographs of one role (``"train"``, ``"test"``), or all of them (``None``)."""
    if role is None:
        return CATALOGUE
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; the roles are {ROLES} (or None for all)")
    return tuple(photo for photo in CATALOGUE if photo.role == role)


@functools.cache
def _package_dir(package: str) -> Path:
    # find_spec of a top-level name locates the package without importing it (sklearn and
    # matplotlib take seconds to import; only their files are needed)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(package)
    return Path(next(iter(spec.submodule_search_locations)))


def photo_path(photo: SourcePhoto | str) -> Path:
    """The file of a photograph (a :class:`SourcePhoto` or a catalogue name); raises if its package is missing."""
    photo = _lookup(photo)
    if photo.package == "user":
        return Path(photo.relpath)
    try:
        folder = _package_dir(photo.package)
    except ModuleNotFoundError as exc:
        raise PhotoUnavailableError(
            f"photograph {photo.name!r} ships with the package {photo.distribution!r}, which is not installed; "
            f"install it with `pip install 'hrrkit[wild]'` (or `pip install {photo.distribution}`)"
        ) from exc
    return folder / photo.relpath


def _lookup(photo: SourcePhoto | str) -> SourcePhoto:
    if isinstance(photo, SourcePhoto):
        return photo
    try:
        return _BY_NAME[photo]
    except KeyError:
        raise KeyError(f"{photo!r} is not a catalogue photograph; the names are {sorted(_BY_NAME)}") from None


def _read_checked(photo: SourcePhoto) -> bytes:
    if photo.package == "user":
        return read_pinned(photo_path(photo), photo.sha256, PhotoUnavailableError, owner="the user's folder",
                           fix="the file changed after it was listed; build again")
    return read_pinned(
        photo_path(photo), photo.sha256, PhotoUnavailableError, owner=f"the package {photo.distribution!r}",
        fix=f"reinstall it (`pip install --force-reinstall {photo.distribution}`), or if a new release changed the "
        f"photograph on purpose, update hrrkit.retrospect.photos.CATALOGUE",
    )


@functools.lru_cache(maxsize=32)
def _decode(photo: SourcePhoto) -> np.ndarray:
    import io

    from PIL import Image, UnidentifiedImageError

    data = _read_checked(photo)
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise PhotoUnavailableError(f"{photo_path(photo)}: not a readable image ({exc}); replace or remove it") from exc
    array.setflags(write=False)
    return array


def load_source_photograph(photo: SourcePhoto | str) -> np.ndarray:
    """A photograph's pixels as a read-only ``uint8`` array ``(H, W, 3)``, after checking its SHA-256.

    Raises :class:`PhotoUnavailableError` naming the package and the fix when the package is missing
    or the file is missing, changed or unreadable.
    """
    return _decode(_lookup(photo))


def user_photographs(real_dirs: Sequence[str | os.PathLike] | None) -> tuple[SourcePhoto, ...]:
    """A user's own photographs (every image file under ``real_dirs``, recursively), sorted by hash.

    Each file's role comes from its SHA-256 (the first 8 hex digits as a fraction below
    :data:`USER_TEST_FRACTION` → ``"test"``), so a file keeps its split however the folders change;
    identical files are listed once. Raises ``FileNotFoundError`` for a missing folder.
    """
    found: dict[str, SourcePhoto] = {}
    for folder in real_dirs or ():
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: real_dirs entry is not a folder; pass folders of your own photographs")
        for path in sorted(_iter_images(folder)):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            role = "test" if int(digest[:8], 16) / 16**8 < USER_TEST_FRACTION else "train"
            found.setdefault(
                digest,
                SourcePhoto(f"user-{digest[:12]}", "user", "", str(path.resolve()), "the user's own", "", digest, role),
            )
    return tuple(found[key] for key in sorted(found))


def _iter_images(folder: Path) -> Iterable[Path]:
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix.lower() in _USER_SUFFIXES:
            yield path


def catalogue_digest(photos: Iterable[SourcePhoto] = CATALOGUE) -> str:
    """SHA-256 over the names, roles and file hashes of ``photos`` (a cache-key input)."""
    digest = hashlib.sha256()
    for photo in photos:
        digest.update(f"{photo.name}|{photo.role}|{photo.scene}|{photo.sha256}\n".encode())
    return digest.hexdigest()
