"""Readers for the standard real/generated data set layouts, all producing :class:`Sample` records.

Supported layouts (``detect_layout`` tells them apart; see ``docs/data.md`` for trees):

``forensynths``  (CNNDetection / ForenSynths)
    As shipped: ``ROOT/{train,val}/<class>/{0_real,1_fake}/*`` (ProGAN's 20 LSUN classes; the tree
    does not name the generator) and ``ROOT/test/<generator>/[<class>/]{0_real,1_fake}/*``. Without a
    split folder, ROOT is one generator's folder ``ROOT/<class>/{0_real,1_fake}`` (generator = ROOT's
    name, or ``generator=``) or a collection ``ROOT/<generator>/[<class>/]{0_real,1_fake}``.
``genimage``
    ``ROOT/<generator>/<subset>/{train,val}/{ai,nature}/*`` as shipped (e.g.
    ``stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/train/ai``), or without the subset level
    ``ROOT/<generator>/{train,val}/{ai,nature}/*`` (or ROOT is one generator's folder).
``diffusionforensics``  (DIRE's DiffusionForensics)
    ``ROOT/<split>/<source>/{real,<generator>...}/*`` (or ROOT is one split's folder).
``flat``
    ``ROOT/real/*`` and ``ROOT/fake/*`` (``fake/<generator>/*`` names the generator), optionally
    below ``ROOT/{train,val,test}/``.
``csv``
    a CSV manifest with a header: ``path,label[,generator,split,source]``; ``label`` is 0/1 or
    real/fake (nature/ai); relative paths are resolved against the CSV's folder.

Reals keep the generator of the folder they are paired with (ForenSynths, GenImage) or ``None`` when
they are shared by several generators (DiffusionForensics, flat). ``hrrkit.eval.metrics`` uses this
to pair each generator's fakes with its reals in per-generator tables.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hrrkit.data.io import is_image_file, list_image_files

__all__ = [
    "LAYOUTS",
    "SPLIT_NAMES",
    "LayoutError",
    "Sample",
    "detect_layout",
    "read_layout",
    "read_forensynths",
    "read_genimage",
    "read_diffusionforensics",
    "read_flat",
    "read_csv_manifest",
]

REAL, FAKE = 0, 1
SPLIT_NAMES: frozenset[str] = frozenset({"train", "val", "valid", "validation", "test"})
LAYOUTS: tuple[str, ...] = ("forensynths", "genimage", "diffusionforensics", "flat", "csv")

_EXPECTED = """hrrkit recognises these layouts:
  forensynths         ROOT/train|val/<class>/0_real|1_fake/<images>, ROOT/test/<generator>/[<class>/]0_real|1_fake
  genimage            ROOT/<generator>/[<subset>/]train|val/nature|ai/<images>
  diffusionforensics  ROOT/<split>/<source>/real|<generator>/<images>
  flat                ROOT/real/<images> and ROOT/fake/<images>   (optionally under ROOT/<split>/)
  csv                 a .csv manifest with columns path,label[,generator,split,source]"""


class LayoutError(ValueError):
    """The folder is empty, missing, or not in a layout hrrkit recognises (the message says which)."""


@dataclass(frozen=True)
class Sample:
    """One image of a data set.

    Attributes:
        path: the image file.
        label: 0 = real, 1 = fake (generated).
        generator: the generator of a fake, or for a real the generator folder it is paired with;
            ``None`` for reals shared by all generators (and fakes of unknown origin).
        split: ``"train"``, ``"val"``, ``"test"`` (as named on disk) or ``None``.
        source: the content class or source data set (ForenSynths class, DiffusionForensics source).
    """

    path: Path
    label: int
    generator: str | None = None
    split: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.label not in (REAL, FAKE):
            raise ValueError(f"{self.path}: label must be 0 (real) or 1 (fake), got {self.label!r}")
        if not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))

    @property
    def is_fake(self) -> bool:
        return self.label == FAKE

    def to_dict(self) -> dict[str, object]:
        row = asdict(self)
        row["path"] = self.path.as_posix()
        return row


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _root(root: str | os.PathLike) -> Path:
    path = Path(root)
    if not path.exists():
        raise LayoutError(f"{path}: no such folder")
    if not path.is_dir():
        raise LayoutError(f"{path}: is not a folder (a CSV manifest must end in .csv)")
    return path


def _subdirs(path: Path) -> list[Path]:
    # scandir's is_dir() answers from the directory entry (no stat per file), which matters when
    # detection looks into folders of a hundred thousand images
    try:
        with os.scandir(path) as entries:
            return sorted(Path(e.path) for e in entries if not e.name.startswith(".") and _entry_is_dir(e))
    except OSError:
        return []


def _entry_is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _images(folder: Path) -> list[Path]:
    return list_image_files(folder, recursive=True)


def _split_of(name: str) -> str | None:
    return name if name.lower() in SPLIT_NAMES else None


def _require(samples: list[Sample], root: Path, layout: str, looked_in: Iterable[Path]) -> list[Sample]:
    if not samples:
        places = ", ".join(sorted({p.as_posix() for p in looked_in})) or root.as_posix()
        raise LayoutError(
            f"{root}: looks like the {layout} layout but holds no image files (looked in {places}); "
            "image files need an extension such as .png, .jpg or .webp"
        )
    return samples


def _walk_dirs(root: Path, max_depth: int, *, leaves: Iterable[str] = ()) -> Iterable[tuple[Path, int]]:
    """Sub-folders of ``root`` down to ``max_depth`` levels, with their depth (children are depth 1).

    Folders named in ``leaves`` are yielded but not entered (label folders hold images, not layout).
    """
    leaf_names = frozenset(leaves)
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        if depth >= max_depth:
            continue
        for child in _subdirs(folder):
            yield child, depth + 1
            if child.name not in leaf_names:
                stack.append((child, depth + 1))


# --------------------------------------------------------------------------------------------------
# ForenSynths
# --------------------------------------------------------------------------------------------------

_FS_LABELS = {"0_real": REAL, "1_fake": FAKE}
# CNNDetection's train and val folders hold classes of one generator (ProGAN); test holds generators
_FS_TRAINING_SPLITS = frozenset({"train", "val"})


def read_forensynths(
    root: str | os.PathLike, *, generator: str | None = None, split: str | None = None
) -> list[Sample]:
    """Read ForenSynths (CNNDetection): ``ROOT/[<split>/][<generator>/][<class>/]{0_real,1_fake}``.

    For each label folder, the folders between it and ROOT (after a split folder, if any) are read
    by where they sit:

    * below a **training split** folder (``train``, ``val``; ROOT itself or ROOT's child): one level
      is the class (``train/airplane/0_real``: source ``airplane``) and the generator is
      ``generator`` (default ``None``: CNNDetection's training fakes are all ProGAN's, but the tree
      does not say so); two or more levels read ``<generator>/<class>``;
    * below any **other split** folder (``test``): the first level is the generator and the rest
      the class (``test/progan/car/0_real``, ``test/deepfake/0_real`` without classes);
    * with **no split folder**: if some label folder sits two levels below ROOT, ROOT is a
      collection read as ``test`` is; otherwise ROOT is one generator's folder whose children are
      classes, and the generator is ``generator`` or ROOT's own name.

    ``generator`` only names the generator where the tree does not; generator folders keep their
    names. ``split`` is the split of label folders with no split folder above them (structure is
    still read by the rule for no split folder).
    """
    base = _root(root)
    label_dirs = [d for d, _ in _walk_dirs(base, 5, leaves=_FS_LABELS) if d.name in _FS_LABELS]
    if not label_dirs:
        raise LayoutError(f"{base}: no 0_real or 1_fake folder found for the forensynths layout\n{_EXPECTED}")

    base_split = _split_of(base.name)
    parsed = []  # (label folder, levels between split and label, split folder name or None)
    for folder in label_dirs:
        parts = list(folder.relative_to(base).parts[:-1])
        folder_split = parts.pop(0) if parts and _split_of(parts[0]) else base_split
        parsed.append((folder, parts, folder_split))
    # the one-generator-folder reading only applies where no split folder says otherwise
    collection = any(len(parts) >= 2 for _, parts, folder_split in parsed if folder_split is None)
    root_generator = generator or base.name  # used only where no split folder is involved

    samples: list[Sample] = []
    for folder, parts, folder_split in parsed:
        if folder_split is not None and _canonical_split(folder_split) in _FS_TRAINING_SPLITS and len(parts) < 2:
            gen, cls = generator, "/".join(parts) or None
        elif folder_split is not None:
            gen = parts[0] if parts else generator
            cls = "/".join(parts[1:]) or None
        elif collection:
            gen = parts[0] if parts else root_generator
            cls = "/".join(parts[1:]) or None
        else:
            gen, cls = root_generator, "/".join(parts) or None
        label = _FS_LABELS[folder.name]
        sample_split = folder_split or split
        for path in _images(folder):
            samples.append(Sample(path, label, gen, sample_split, cls))
    return _require(samples, base, "forensynths", label_dirs)


# --------------------------------------------------------------------------------------------------
# GenImage
# --------------------------------------------------------------------------------------------------

_GI_LABELS = {"nature": REAL, "ai": FAKE}
_GI_SPLITS = ("train", "val")


def _is_genimage_split_holder(d: Path) -> bool:
    """``d`` holds ``{train,val}/{nature,ai}`` (a generator folder, or GenImage's subset folder)."""
    return any((d / s / lab).is_dir() for s in _GI_SPLITS for lab in _GI_LABELS)


def _genimage_folders(base: Path) -> list[tuple[str, Path]]:
    """(generator name, folder holding ``{train,val}``) pairs under ``base``.

    ``base/{train,val}`` → ROOT's own name; ``base/<g>/{train,val}`` → ``<g>``;
    ``base/<g>/<subset>/{train,val}`` (GenImage as shipped) → ``<g>``, the outer folder.
    """
    if _is_genimage_split_holder(base):
        return [(base.name, base)]
    found: list[tuple[str, Path]] = []
    for child in _subdirs(base):
        if _is_genimage_split_holder(child):
            found.append((child.name, child))
        else:
            found.extend((child.name, sub) for sub in _subdirs(child) if _is_genimage_split_holder(sub))
    return found


def read_genimage(
    root: str | os.PathLike, *, splits: Sequence[str] | None = None, generator: str | None = None
) -> list[Sample]:
    """Read ``ROOT/<generator>/[<subset>/]{train,val}/{nature,ai}`` (or ROOT = one generator's folder).

    GenImage ships an extra subset level (``stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/train/ai``):
    the generator is the outer folder's name (``stable_diffusion_v_1_4``). When ROOT is one
    generator's folder with a subset level below it, the subset level cannot be told from a
    generator level, so the subset's name becomes the generator: pass ``generator=`` to name it.
    ``splits`` restricts to some of ``("train", "val")``. Reals keep their generator's name.
    """
    base = _root(root)
    folders = _genimage_folders(base)
    if not folders:
        raise LayoutError(
            f"{base}: no <generator>/[<subset>/]train|val/nature|ai folders for the genimage layout\n{_EXPECTED}"
        )
    wanted = tuple(splits) if splits is not None else _GI_SPLITS
    samples: list[Sample] = []
    looked: list[Path] = []
    for gen_name, holder in folders:
        gen = generator or gen_name
        for split in wanted:
            for label_name, label in _GI_LABELS.items():
                folder = holder / split / label_name
                if folder.is_dir():
                    looked.append(folder)
                    samples.extend(Sample(p, label, gen, split, None) for p in _images(folder))
    return _require(samples, base, "genimage", looked)


# --------------------------------------------------------------------------------------------------
# DiffusionForensics
# --------------------------------------------------------------------------------------------------


def _df_split_dirs(base: Path) -> list[tuple[Path, str | None]]:
    """(split folder, split name) pairs: ROOT's split children, or ROOT itself."""
    splits = [(d, d.name) for d in _subdirs(base) if _split_of(d.name)]
    if splits:
        return splits
    return [(base, _split_of(base.name))]


def read_diffusionforensics(root: str | os.PathLike) -> list[Sample]:
    """Read ``ROOT/<split>/<source>/{real,<generator>...}`` (or ROOT = one split's folder).

    Reals get ``generator=None`` (shared by every generator of their source) and ``source=<source>``.
    """
    base = _root(root)
    samples: list[Sample] = []
    looked: list[Path] = []
    for split_dir, split in _df_split_dirs(base):
        for source_dir in _subdirs(split_dir):
            kinds = _subdirs(source_dir)
            if not any(k.name == "real" for k in kinds):
                continue
            for kind in kinds:
                looked.append(kind)
                if kind.name == "real":
                    samples.extend(Sample(p, REAL, None, split, source_dir.name) for p in _images(kind))
                else:
                    samples.extend(Sample(p, FAKE, kind.name, split, source_dir.name) for p in _images(kind))
    if not looked:
        raise LayoutError(f"{base}: no <split>/<source>/real folder for the diffusionforensics layout\n{_EXPECTED}")
    return _require(samples, base, "diffusionforensics", looked)


# --------------------------------------------------------------------------------------------------
# flat real/ + fake/
# --------------------------------------------------------------------------------------------------


def _flat_roots(base: Path) -> list[tuple[Path, str | None]]:
    def is_flat(d: Path) -> bool:
        return (d / "real").is_dir() or (d / "fake").is_dir()

    if is_flat(base):
        return [(base, _split_of(base.name))]
    return [(d, d.name) for d in _subdirs(base) if _split_of(d.name) and is_flat(d)]


def read_flat(root: str | os.PathLike, *, generator: str | None = None) -> list[Sample]:
    """Read ``ROOT/real`` and ``ROOT/fake`` (optionally under ``ROOT/<split>/``).

    Images directly in ``fake/`` get ``generator`` (default ``None``, unknown); images in
    ``fake/<name>/`` get generator ``<name>``. Reals are shared (``generator=None``).
    """
    base = _root(root)
    roots = _flat_roots(base)
    if not roots:
        raise LayoutError(f"{base}: no real/ or fake/ folder for the flat layout\n{_EXPECTED}")
    samples: list[Sample] = []
    looked: list[Path] = []
    for folder, split in roots:
        real, fake = folder / "real", folder / "fake"
        if real.is_dir():
            looked.append(real)
            samples.extend(Sample(p, REAL, None, split, None) for p in _images(real))
        if fake.is_dir():
            looked.append(fake)
            for path in _images(fake):
                rel = path.relative_to(fake).parts
                gen = rel[0] if len(rel) > 1 else generator
                samples.append(Sample(path, FAKE, gen, split, None))
    return _require(samples, base, "flat", looked)


# --------------------------------------------------------------------------------------------------
# CSV manifest
# --------------------------------------------------------------------------------------------------

_LABEL_WORDS = {"0": REAL, "1": FAKE, "real": REAL, "fake": FAKE, "nature": REAL, "ai": FAKE}


def read_csv_manifest(path: str | os.PathLike, *, check_files: bool = True) -> list[Sample]:
    """Read a CSV manifest with a header ``path,label[,generator,split,source]`` (any column order).

    ``label`` is ``0``/``1`` or ``real``/``fake`` (also ``nature``/``ai``); relative paths are taken
    relative to the CSV's folder. Empty optional cells become ``None``. With ``check_files`` a row
    whose file is missing raises :class:`LayoutError` naming the line (undecodable files are left to
    the loader, which reports and skips them).
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise LayoutError(f"{manifest}: no such CSV manifest")
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        missing = {"path", "label"} - set(fields)
        if missing:
            raise LayoutError(
                f"{manifest}: the header must name the columns path,label[,generator,split,source]; "
                f"missing {sorted(missing)} (found {fields or 'no header'})"
            )
        samples = []
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            if not any(row.values()):
                continue
            raw_label = row.get("label", "").lower()
            if raw_label not in _LABEL_WORDS:
                raise LayoutError(f"{manifest}:{line}: label {row.get('label')!r} is not 0/1, real/fake or nature/ai")
            if not row.get("path"):
                raise LayoutError(f"{manifest}:{line}: the path cell is empty")
            file = Path(row["path"])
            if not file.is_absolute():
                file = manifest.parent / file
            if check_files and not file.is_file():
                raise LayoutError(f"{manifest}:{line}: {file} does not exist")
            samples.append(
                Sample(
                    file,
                    _LABEL_WORDS[raw_label],
                    row.get("generator") or None,
                    row.get("split") or None,
                    row.get("source") or None,
                )
            )
    if not samples:
        raise LayoutError(f"{manifest}: the manifest has a header but no rows")
    return samples


# --------------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------------


def detect_layout(root: str | os.PathLike) -> str:
    """The name of the layout of ``root`` (one of :data:`LAYOUTS`), or :class:`LayoutError`.

    Checked in order: a ``.csv`` file; any ``0_real``/``1_fake`` folder (forensynths);
    ``<generator>/[<subset>/]{train,val}/{nature,ai}`` (genimage); ``real/`` or ``fake/`` at ROOT or below a
    split folder (flat); ``<split>/<source>/real`` or ``<source>/real`` (diffusionforensics).
    """
    path = Path(root)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise LayoutError(f"{path}: is a file; a manifest must be a .csv file\n{_EXPECTED}")
    base = _root(path)
    if any(d.name in _FS_LABELS for d, _ in _walk_dirs(base, 5, leaves=_FS_LABELS)):
        return "forensynths"
    if _genimage_folders(base):
        return "genimage"
    if _flat_roots(base):
        return "flat"
    for split_dir, _ in _df_split_dirs(base):
        if any((s / "real").is_dir() for s in _subdirs(split_dir)):
            return "diffusionforensics"
    children = [d.name for d in _subdirs(base)]
    loose = sum(1 for p in base.iterdir() if p.is_file() and is_image_file(p)) if base.is_dir() else 0
    found = f"sub-folders {children[:10]}" if children else "no sub-folders"
    if loose:
        found += f" and {loose} loose image file(s) (unlabelled: use `hrrkit detect` to score them)"
    if not children and not loose:
        raise LayoutError(f"{base}: the folder is empty\n{_EXPECTED}")
    raise LayoutError(f"{base}: not a recognised layout; found {found}\n{_EXPECTED}")


_READERS = {
    "forensynths": read_forensynths,
    "genimage": read_genimage,
    "diffusionforensics": read_diffusionforensics,
    "flat": read_flat,
    "csv": read_csv_manifest,
}


def read_layout(root: str | os.PathLike, layout: str = "auto", *, split: str | None = None) -> list[Sample]:
    """All samples under ``root`` in ``layout`` (``"auto"`` = :func:`detect_layout`), sorted by path.

    ``split`` keeps only samples of that split (compared case-insensitively; ``"val"`` also
    matches ``valid``/``validation``); an empty result raises :class:`LayoutError` naming the splits
    that exist.
    """
    name = detect_layout(root) if layout == "auto" else layout
    if name not in _READERS:
        raise LayoutError(f"unknown layout {layout!r}; choose 'auto' or one of {list(LAYOUTS)}")
    samples = sorted(_READERS[name](root), key=lambda s: (s.path.as_posix(), s.label))
    if split is not None:
        wanted = _canonical_split(split)
        kept = [s for s in samples if s.split is not None and _canonical_split(s.split) == wanted]
        if not kept:
            have = sorted({str(s.split) for s in samples})
            raise LayoutError(f"{root}: no samples in split {split!r}; the {name} data has splits {have}")
        samples = kept
    return samples


def _canonical_split(name: str) -> str:
    lowered = name.lower()
    return "val" if lowered in {"val", "valid", "validation"} else lowered
