"""The image pools without the registries: package data, member formats, checks, clusters, user folders.

Everything here is offline and synthetic (fake archives in a temporary cache); the quick pools
themselves, fetched from PyPI, are tested in ``test_pools_quick.py``.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrrkit.cli import main as cli_main
from hrrkit.datasets import generated_pool, packages, photo_pool
from hrrkit.datasets.folder_pool import FolderPool
from hrrkit.datasets.generated_pool import (
    MEDIA_WHEELS,
    QUICK_WHEELS,
    GeneratedFile,
    GeneratedPool,
    choose_primary,
    drop_reserved,
    frame_indices,
    generated_files,
    is_reserved,
)
from hrrkit.datasets.packages import ChangedFileError, PinnedPackage, SourceUnavailable, fetch_package
from hrrkit.datasets.photo_pool import PhotoPool, ReviewedPhoto, decode_scipy_face, read_rcc, reviewed_photos
from hrrkit.datasets.pool_record import GROUPS, KIND_TO_GROUP, PoolRecord
from hrrkit.datasets.pool_summary import format_summary, summarise


def _png(color: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# package data
# --------------------------------------------------------------------------------------------------


def test_photo_catalogue_holds_the_reviewed_pool() -> None:
    photos = reviewed_photos()
    sources = photo_pool.photo_sources()
    assert len(photos) == 481 and len(sources) == 28
    per_registry = {r: sum(1 for p in photos if sources[p.source].package.registry == r) for r in ("deb", "pypi", "npm")}
    assert per_registry == {"deb": 440, "pypi": 38, "npm": 3}
    assert len({p.sha256 for p in photos}) == 481
    assert all(len(p.sha256) == 64 and int(p.sha256, 16) >= 0 for p in photos)
    assert not any("lena" in p.member.lower() or "lena" in p.flags for p in photos)  # Lena stays out
    assert {f for p in photos for f in p.flags} <= set(photo_pool.FLAGS)
    assert sum("gray" in p.flags for p in photos) == 37 and sum("calib" in p.flags for p in photos) == 26
    assert set(photo_pool.QUICK_SOURCES) <= {k for k, s in sources.items() if s.package.registry == "pypi"}


def test_generated_catalogue_and_wheels_leave_the_reserved_sources_out() -> None:
    files = generated_files()
    assert len(files) == 523
    assert not any(f.template.lower().startswith("api_") for f in files)
    assert {w for f in files for w in f.members} <= set(MEDIA_WHEELS)  # the pinned allow-list only
    assert len(MEDIA_WHEELS) == 14 and set(QUICK_WHEELS) <= set(MEDIA_WHEELS)
    # the quick wheel holds generator outputs of every report group
    quick_groups = {KIND_TO_GROUP[f.kind] for f in files if f.is_output and set(f.members) & set(QUICK_WHEELS)}
    assert quick_groups == set(GROUPS)
    # a cluster may span families: one Qwen edit picture is also the first frame of an LTX clip
    # (image-to-video), so a benchmark must keep clusters whole across its family split
    families: dict[str, set[str]] = {}
    for f in files:
        families.setdefault(f.cluster, set()).add(f.family)
    assert {c: v for c, v in families.items() if len(v) > 1} == {"97b8d33d6616": {"qwen", "video-ltx"}}


def test_is_reserved_and_drop_reserved_drop_the_whole_cluster() -> None:
    assert is_reserved("api_0_made_up_template") and is_reserved("API_0_MADE_UP") and not is_reserved("image_qwen_api")

    def make(sha: str, template: str, cluster: str, wheel: str = MEDIA_WHEELS[0]) -> GeneratedFile:
        return GeneratedFile(sha, {wheel: f"x/templates/{template}-1.webp"}, template, 1, "t2i", "g", "fam", "output",
                             cluster, 1, 400, 400)

    kept = drop_reserved([
        make("a" * 64, "api_0_made_up_template", "c1"),
        make("b" * 64, "flux_dev_copy", "c1"),  # a copy of a reserved picture under another name: out too
        make("c" * 64, "sdxl_simple", "c2"),
        make("d" * 64, "sd1_default", "c3", wheel="comfyui-workflow-templates-media-other==0.0.1"),  # unlisted
    ])
    assert [f.sha256[0] for f in kept] == ["c"]


def test_generated_pool_refuses_any_wheel_outside_its_allow_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown media wheel"):
        GeneratedPool(root=tmp_path, wheels=["comfyui-workflow-templates-media-other==0.0.1"])
    with pytest.raises(ValueError, match="unknown media wheel"):
        GeneratedPool(root=tmp_path, wheels=["comfyui-workflow-templates-media-image==9.9.9"])
    with pytest.raises(ValueError, match="frames"):
        GeneratedPool(root=tmp_path, frames=0)


# --------------------------------------------------------------------------------------------------
# clusters, primary members, frames
# --------------------------------------------------------------------------------------------------


def _file(sha: str, cluster: str, kind: str = "t2i", size: int = 400, idx: int = 1, badge: int = 0) -> GeneratedFile:
    return GeneratedFile(sha * 64, {}, "tpl", idx, kind, "g", "fam", "output", cluster, 1, size, size, 0.0, badge)


def test_choose_primary_prefers_output_kind_then_size_then_newer_wheel() -> None:
    files = [
        _file("a", "k", kind="anim-frame", size=1024),  # larger, but a slideshow preview: not primary
        _file("b", "k", kind="t2i", size=400),
        _file("c", "s", size=400), _file("d", "s", size=1024),  # the larger re-encode wins
        _file("e", "w", size=400), _file("f", "w", size=400),  # same size: the newer wheel wins
        _file("g", "t", idx=2), _file("h", "t", idx=1),  # all else equal: -1 before -2
        _file("i", "b", badge=1), _file("j", "b", badge=0),  # no logo badge preferred
    ]
    wheel_of = {f.sha256: MEDIA_WHEELS[-1] for f in files}
    wheel_of["f" * 64] = MEDIA_WHEELS[0]
    primary = choose_primary(files, wheel_of)
    assert {k: v[0] for k, v in primary.items()} == {"k": "b", "s": "d", "w": "f", "t": "h", "b": "j"}
    assert choose_primary(files[::-1], wheel_of) == primary  # never depends on the input order


def test_choose_primary_reproduces_the_reviewed_choice() -> None:
    """On the full catalogue (every file in its first wheel) hrrkit picks the primaries the review picked."""
    import gzip

    with gzip.open(generated_pool.CATALOGUE_PATH, "rt") as handle:
        reviewed = {r["sha256"]: r["reviewed_primary"] for r in json.load(handle)["files"]}
    files = generated_files()
    wheel_of = {f.sha256: next(w for w in MEDIA_WHEELS if w in f.members) for f in files}
    chosen = set(choose_primary(files, wheel_of).values())
    assert {f.sha256 for f in files if reviewed[f.sha256]} == chosen


def test_frame_indices_spread_through_the_clip() -> None:
    assert frame_indices(60, 4) == [7, 22, 37, 52]
    assert frame_indices(60, 1) == [30]
    assert frame_indices(3, 16) == [0, 1, 2]  # a short clip gives every frame once
    assert len(frame_indices(303, 16)) == 16 and frame_indices(303, 16)[-1] <= 302
    with pytest.raises(ValueError):
        frame_indices(0, 4)


# --------------------------------------------------------------------------------------------------
# member formats
# --------------------------------------------------------------------------------------------------


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A Qt binary resource file (format version 2) holding ``{"dir/name": (bytes, zlib?)}`` in one folder."""
    folder = {p.split("/")[0] for p in files}
    assert len(folder) == 1
    names, payload, entries = b"", b"", []

    def name(text: str) -> int:
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    entries.append(struct.pack(">IHII", 0, 2, 1, 1) + bytes(8))  # root: one child (the folder) at index 1
    entries.append(struct.pack(">IHII", name(folder.pop()), 2, len(files), 2) + bytes(8))
    for path, (blob, compress) in files.items():
        stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if compress else blob
        offset = len(payload)
        payload += struct.pack(">I", len(stored)) + stored
        entries.append(struct.pack(">IHHHI", name(path.split("/")[1]), int(compress), 0, 0, offset) + bytes(8))
    tree = b"".join(entries)
    header = 20
    return b"qres" + struct.pack(">IIII", 2, header, header + len(tree), header + len(tree) + len(payload)) + tree \
        + payload + names


def test_read_rcc_reads_plain_and_zlib_members() -> None:
    a, b = _png((200, 10, 10)), _png((10, 200, 10), (9, 7))
    got = dict(read_rcc(_rcc({"images/a.png": (a, False), "images/b.png": (b, True)})))
    assert got == {"images/a.png": a, "images/b.png": b}
    with pytest.raises(ValueError, match="qres"):
        list(read_rcc(b"PK\x03\x04 not a resource file"))


def test_decode_scipy_face_gives_the_pixels_as_png() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    png = decode_scipy_face(bz2.compress(pixels.tobytes(), 1))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)
    with pytest.raises(ValueError, match="1024 x 768"):
        decode_scipy_face(bz2.compress(b"\0" * 30))


# --------------------------------------------------------------------------------------------------
# fetching: missing sources, changed files, the extraction record
# --------------------------------------------------------------------------------------------------


def test_a_missing_client_skips_the_source_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(packages.shutil, "which", lambda name: None if name == "npm" else real_which(name))
    lines: list[str] = []
    pool = PhotoPool(root=tmp_path, only=["tracking"], progress=False, report=lines.append)
    assert list(pool.records()) == []
    assert len(lines) == 1 and pool.skipped == lines
    assert "tracking" in lines[0] and "npm not found" in lines[0]


def test_a_package_not_in_the_registry_is_unavailable(tmp_path: Path) -> None:
    bogus = PinnedPackage("pypi", "hrrkit-no-such-package-for-tests", "0.0.1")
    with pytest.raises(SourceUnavailable, match="offline"):
        fetch_package(bogus, tmp_path, offline=True)
    with pytest.raises(SourceUnavailable, match="hrrkit-no-such-package-for-tests==0.0.1"):
        fetch_package(bogus, tmp_path)  # pip download fails (no such project, or no network)


@pytest.fixture
def fake_imgaug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A cache whose ``imgaug==0.4.0`` wheel holds two small pictures, and a reviewed list naming them."""
    good, other = _png((30, 90, 150)), _png((150, 90, 30))
    wheel = tmp_path / "downloads" / "pypi" / "imgaug-0.4.0-py2.py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("imgaug/quokka.png", good)
        archive.writestr("imgaug/other.png", other)
    reviewed = (ReviewedPhoto("imgaug", "imgaug/quokka.png", hashlib.sha256(good).hexdigest(), 24, 16, ("small",),
                              "a test picture", "", "PNG"),)
    monkeypatch.setattr(photo_pool, "reviewed_photos", lambda: reviewed)
    return tmp_path, wheel, good


def test_pool_extracts_checks_and_records_then_reads_no_archive(fake_imgaug) -> None:
    root, wheel, good = fake_imgaug
    (record,) = PhotoPool(root=root, only=["imgaug"], offline=True, progress=False).records()
    assert isinstance(record, PoolRecord) and record.label == 0 and record.kind == "photo"
    assert record.source == "imgaug==0.4.0" and record.source_key == "imgaug" and record.registry == "pypi"
    assert record.path.read_bytes() == good and record.sha256 == hashlib.sha256(good).hexdigest()
    assert record.flags == ("small",) and record.license == "MIT"
    wheel.unlink()  # a warm run checks the extracted file against the record and needs no archive
    (again,) = PhotoPool(root=root, only=["imgaug"], offline=True, progress=False).records()
    assert again == record
    record.path.write_bytes(b"tampered")  # a damaged extracted file is not trusted: the archive is needed again
    pool = PhotoPool(root=root, only=["imgaug"], offline=True, progress=False, report=lambda line: None)
    assert list(pool.records()) == [] and "not in" in pool.skipped[0]


def test_a_changed_file_is_rejected_naming_package_and_file(fake_imgaug, monkeypatch: pytest.MonkeyPatch) -> None:
    root, wheel, good = fake_imgaug
    changed = (ReviewedPhoto("imgaug", "imgaug/other.png", "0" * 64, 24, 16),)
    monkeypatch.setattr(photo_pool, "reviewed_photos", lambda: changed)
    with pytest.raises(ChangedFileError, match=r"imgaug==0\.4\.0: imgaug/other\.png changed"):
        list(PhotoPool(root=root, only=["imgaug"], offline=True, progress=False).records())
    lines: list[str] = []
    (record,) = PhotoPool(root=root, only=["imgaug"], offline=True, progress=False, accept_changed=True,
                          report=lines.append).records()
    assert record.path.read_bytes() == _png((150, 90, 30)) and len(lines) == 1 and "accepted" in lines[0]
    missing = (ReviewedPhoto("imgaug", "imgaug/gone.png", "0" * 64, 24, 16),)
    monkeypatch.setattr(photo_pool, "reviewed_photos", lambda: missing)
    with pytest.raises(ChangedFileError, match=r"imgaug==0\.4\.0: imgaug/gone\.png is missing"):
        list(PhotoPool(root=root, only=["imgaug"], offline=True, progress=False).records())


def test_photo_pool_filters_and_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown photo source"):
        PhotoPool(root=tmp_path, only=["caer"])
    with pytest.raises(ValueError, match="unknown photo flag"):
        PhotoPool(root=tmp_path, exclude_flags=["blurry"])
    pool = PhotoPool(root=tmp_path, exclude_flags=["calib", "small"], min_side=300)
    kept = [p for s in pool.selected_sources() for p in pool.selected_photos(s.key)]
    assert kept and all(min(p.width, p.height) >= 300 and not {"calib", "small"} & set(p.flags) for p in kept)
    assert [s.key for s in PhotoPool(root=tmp_path, quick=True).selected_sources()] == \
        [k for k in photo_pool.photo_sources() if k in photo_pool.QUICK_SOURCES]


def test_generated_pool_writes_stills_and_frames_from_a_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel_spec = QUICK_WHEELS[0]
    still = _png((1, 2, 3), (40, 30))
    frames = [Image.new("RGB", (20, 20), (10 * i, 0, 0)) for i in range(10)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    clip = buffer.getvalue()
    name, version = wheel_spec.split("==")
    wheel = tmp_path / "downloads" / "pypi" / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("m/templates/flux_dev-1.png", still)
        archive.writestr("m/templates/wan2_2_t2v-1.webp", clip)
    files = (
        GeneratedFile(hashlib.sha256(still).hexdigest(), {wheel_spec: "m/templates/flux_dev-1.png"}, "flux_dev", 1,
                      "t2i", "FLUX.1 dev", "flux1", "output", "still1", 1, 40, 30),
        GeneratedFile(hashlib.sha256(clip).hexdigest(), {wheel_spec: "m/templates/wan2_2_t2v-1.webp"}, "wan2_2_t2v",
                      1, "video-frame", "Wan 2.2", "video-wan", "output", "clip1", 10, 20, 20, 10.0),
    )
    monkeypatch.setattr(generated_pool, "generated_files", lambda: files)
    records = list(GeneratedPool(root=tmp_path, quick=True, frames=4, offline=True, progress=False).records())
    stills = [r for r in records if "frame" not in r.extra]
    clip_frames = [r for r in records if "frame" in r.extra]
    assert len(stills) == 1 and stills[0].path.read_bytes() == still and stills[0].group == "text-to-image"
    assert [int(r.extra["frame"]) for r in clip_frames] == frame_indices(10, 4)
    assert {r.cluster for r in clip_frames} == {"clip1"} and all(r.group == "video" for r in clip_frames)
    for r in clip_frames:  # frame i of the clip, decoded to RGB PNG
        assert np.asarray(Image.open(r.path))[0, 0, 0] == 10 * int(r.extra["frame"])
        assert r.sha256 == hashlib.sha256(r.path.read_bytes()).hexdigest()
        assert r.extra["src_sha256"] == files[1].sha256 and r.extra["primary"] == "1"
    more = list(GeneratedPool(root=tmp_path, quick=True, frames=16, offline=True, progress=False).records())
    assert len([r for r in more if "frame" in r.extra]) == 10  # a 10-frame clip gives all its 10 frames
    wheel.unlink()  # a warm run checks the extracted files against the record and needs no wheel
    lines: list[str] = []
    warm = GeneratedPool(root=tmp_path, quick=True, frames=4, offline=True, progress=False, report=lines.append)
    assert list(warm.records()) == records and lines == []


def test_generated_pool_reads_a_file_from_its_next_wheel_when_the_first_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    newer, older = MEDIA_WHEELS[0], MEDIA_WHEELS[-1]
    picture = _png((7, 7, 7))
    name, version = older.split("==")
    wheel = tmp_path / "downloads" / "pypi" / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("old/templates/sdxl_simple-1.png", picture)
    shared = GeneratedFile(hashlib.sha256(picture).hexdigest(), {newer: "new/templates/sdxl_simple-1.png",
                                                                 older: "old/templates/sdxl_simple-1.png"},
                           "sdxl_simple", 1, "t2i", "SDXL 1.0", "sdxl", "output", "c", 1, 24, 16)
    monkeypatch.setattr(generated_pool, "generated_files", lambda: (shared,))
    lines: list[str] = []
    pool = GeneratedPool(root=tmp_path, wheels=[newer, older], offline=True, progress=False, report=lines.append)
    (record,) = pool.records()
    assert record.source == older and record.extra["member"] == "old/templates/sdxl_simple-1.png"
    assert record.path.read_bytes() == picture and record.extra["primary"] == "1"
    assert len(lines) == 1 and newer in lines[0] and pool.skipped == lines


# --------------------------------------------------------------------------------------------------
# a user's folders
# --------------------------------------------------------------------------------------------------


def test_folder_pool_reads_a_users_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(_png((1, 2, 3)))
    (folder / "sub" / "copy.PNG").write_bytes(_png((1, 2, 3)))
    (folder / "b.jpg").write_bytes(_png((9, 9, 9)))  # PNG bytes under .jpg: read by content
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"junk")
    real = list(FolderPool(folder, label=0).records())
    assert [r.extra["relpath"] for r in real] == ["a.png", "b.jpg", "sub/copy.PNG"]
    assert all(r.label == 0 and r.kind == "photo" and r.source_key == "user:my photos" and r.registry == "user"
               for r in real)
    assert real[0].cluster == real[2].cluster != real[1].cluster  # exact copies share a cluster
    assert (real[0].width, real[0].height) == (24, 16)

    fake = list(FolderPool(folder, label=1, family="my-gan", kind="upscale").records())
    assert all(r.label == 1 and r.family == "my-gan" and r.generator == "my-gan" and r.group == "upscale" for r in fake)
    with pytest.raises(ValueError, match="family"):
        FolderPool(folder, label=1)
    with pytest.raises(ValueError, match="kind"):
        FolderPool(folder, label=1, family="x", kind="analysis")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        FolderPool(tmp_path / "absent", label=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        list(FolderPool(tmp_path / "empty", label=0).records())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"broken\.jpg: not a readable image"):
        list(FolderPool(folder, label=0).records())


# --------------------------------------------------------------------------------------------------
# counts and the command line
# --------------------------------------------------------------------------------------------------


def test_summarise_counts_sources_families_clips_and_groups(tmp_path: Path) -> None:
    def fake(family: str, kind: str, cluster: str, **extra: str) -> PoolRecord:
        return PoolRecord(tmp_path, 1, kind, "w==1", "w", "gen", family, cluster, extra=extra)

    records = [
        PoolRecord(tmp_path, 0, "photo", "p==1", "p", registry="deb", flags=("gray",)),
        PoolRecord(tmp_path, 0, "photo", "p==1", "p", registry="deb"),
        fake("wan", "video-frame", "c1", frame="3", src_sha256="s1"), fake("wan", "video-frame", "c1", frame="9",
                                                                            src_sha256="s1"),
        fake("sd1", "t2i", "c2"), fake("sd1", "t2i", "c2"), fake("sd1", "edit", "c3"),
    ]
    summary = summarise(records)
    assert summary["photos"]["total"] == 2 and summary["photos"]["sources"]["p"]["flags"] == {"gray": 1}
    assert summary["generated"]["families"]["wan"] == {"images": 2, "distinct": 1, "clips": 1, "groups": {"video": 2},
                                                       "generators": ["gen"]}
    assert summary["generated"]["groups"] == {"text-to-image": {"images": 2, "distinct": 1},
                                              "edit": {"images": 1, "distinct": 1},
                                              "video": {"images": 2, "distinct": 1}}
    assert summary["generated"]["distinct"] == 3 and summary["generated"]["clips"] == 1
    text = format_summary(summary)
    assert "real photographs: 2 from 1 sources" in text and "sd1" in text


def test_cli_data_pools_json_and_bad_names(fake_imgaug, capsys: pytest.CaptureFixture[str]) -> None:
    root, _, _ = fake_imgaug
    assert cli_main(["data", "pools", "--only", "caer"]) == 2
    assert "unknown --only" in capsys.readouterr().err
    assert cli_main(["data", "pools", "--only", "imgaug", "--root", str(root), "--offline", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["photos"]["total"] == 1 and summary["photos"]["sources"]["imgaug"]["images"] == 1
    assert summary["generated"]["total"] == 0 and summary["skipped"] == []
    assert set(summary["timings"]["photos"]) == {"download_s", "extract_s", "total_s"}


# --------------------------------------------------------------------------------------------------
# Debian and npm sources, through stand-in clients on PATH
# --------------------------------------------------------------------------------------------------


def _tar_gz(files: dict[str, bytes]) -> bytes:
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _deb(files: dict[str, bytes]) -> bytes:
    """A minimal Debian package: an ``ar`` archive of debian-binary, control.tar.gz and data.tar.gz."""
    out = b"!<arch>\n"
    for name, data in (("debian-binary", b"2.0\n"), ("control.tar.gz", _tar_gz({})), ("data.tar.gz", _tar_gz(files))):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data + b"\n" * (len(data) % 2)
    return out


def _client(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_debian_source_with_rcc_member_and_a_replaced_pinned_version(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """apt-get download of the pinned version fails (a security update replaced it): the current one is
    fetched with one line, and a photograph inside a Qt resource inside the .deb is read and checked."""
    photo = _png((5, 120, 5))
    rcc = _rcc({"images/leaf.png": (photo, True)})
    deb = tmp_path / "fixture.deb"
    deb.write_bytes(_deb({"./usr/share/gcompris-qt/rcc/plants.rcc": rcc}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _client(bin_dir, "apt-get", f'case "$3" in *=*) echo "E: Version not found"; exit 100;; esac\n'
                                f'cp "{deb}" "./$3_3.1-3_all.deb"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    member = "rcc:./usr/share/gcompris-qt/rcc/plants.rcc::images/leaf.png"
    reviewed = (ReviewedPhoto("gcompris-qt-data", member, hashlib.sha256(photo).hexdigest(), 24, 16),)
    monkeypatch.setattr(photo_pool, "reviewed_photos", lambda: reviewed)
    lines: list[str] = []
    monkeypatch.setattr(packages, "warn", lines.append)
    (record,) = PhotoPool(root=tmp_path / "cache", only=["gcompris-qt-data"], progress=False).records()
    assert record.path.read_bytes() == photo and record.path.parts[-3:] == ("plants", "images", "leaf.png")
    assert record.registry == "deb" and record.source == "gcompris-qt-data==3.1-2"
    assert len(lines) == 1 and "pinned version not in the apt archive" in lines[0]


def test_npm_source_through_npm_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _png((200, 200, 0))
    tgz = tmp_path / "fixture.tgz"
    tgz.write_bytes(_tar_gz({"package/test/assets/room.png": photo}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _client(bin_dir, "npm", f'[ "$1" = pack ] && [ "$3" = tracking@1.1.3 ] && cp "{tgz}" ./tracking-1.1.3.tgz\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    reviewed = (ReviewedPhoto("tracking", "package/test/assets/room.png", hashlib.sha256(photo).hexdigest(), 24, 16),)
    monkeypatch.setattr(photo_pool, "reviewed_photos", lambda: reviewed)
    (record,) = PhotoPool(root=tmp_path / "cache", only=["tracking"], progress=False).records()
    assert record.path.read_bytes() == photo and record.registry == "npm" and record.source == "tracking==1.1.3"
