"""`hrrkit data verify` on a tiny folder with a planted duplicate, a train/test leak, a label
conflict and a broken file."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from hrrkit.cli import data as data_cli
from hrrkit.data.verify import verify_dataset


def _img(path, seed, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(path, fmt)
    return path


@pytest.fixture
def planted(tmp_path):
    root = tmp_path / "ds"
    seed = 0
    for split in ("train", "test"):
        for kind in ("real", "fake"):
            for i in range(3):
                seed += 1
                _img(root / split / kind / f"{i}.png", seed)
    shutil.copy(root / "train" / "fake" / "0.png", root / "train" / "fake" / "copy.png")  # duplicate
    shutil.copy(root / "train" / "real" / "1.png", root / "test" / "real" / "leak.png")  # leak
    # same pixels, different file bytes (re-saved with metadata), labelled the other way
    Image.open(root / "test" / "real" / "2.png").save(root / "test" / "fake" / "conflict.png", pnginfo=_meta())
    whole = _img(tmp_path / "whole.jpg", 99, "JPEG").read_bytes()
    (root / "test" / "fake" / "broken.jpg").write_bytes(whole[: len(whole) // 2])  # an interrupted copy
    return root


def _meta():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", "an editor")
    return info


def _parser():
    parser = argparse.ArgumentParser(prog="hrrkit")
    data_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_verify_finds_duplicate_leak_conflict_and_broken_file(planted):
    report = verify_dataset(planted, progress=False, workers=2)
    assert report.layout == "flat"
    counts = report.counts()
    assert counts["total"] == 16
    assert counts["by_split"]["train"] == {"real": 3, "fake": 4, "unreadable": 0}
    assert counts["by_split"]["test"] == {"real": 4, "fake": 5, "unreadable": 1}
    assert [(f.path, f.error) for f in report.bad_files] == [("test/fake/broken.jpg", "truncated")]
    assert ["train/fake/0.png", "train/fake/copy.png"] in report.duplicates
    assert report.leaks == [{"train": ["train/real/1.png"], "held_out": ["test/real/leak.png"]}]
    assert report.label_conflicts == [["test/fake/conflict.png", "test/real/2.png"]]
    files = {f.path: f for f in report.files}
    # the conflict was found through the pixel hash: the file bytes differ
    assert files["test/fake/conflict.png"].sha256 != files["test/real/2.png"].sha256
    assert files["test/fake/conflict.png"].pixel_sha256 == files["test/real/2.png"].pixel_sha256
    assert (files["train/real/0.png"].width, files["train/real/0.png"].height) == (7, 9)
    assert not report.ok


def test_cli_writes_manifest_and_exits_non_zero_on_problems(planted, tmp_path, capsys):
    manifest = tmp_path / "out" / "manifest.json"
    args = _parser().parse_args(["data", "verify", str(planted), "--manifest", str(manifest), "--no-progress"])
    assert args.func(args) == 1
    text = capsys.readouterr().out
    assert "| train | 3 | 4 | 0 |" in text and "train/real/1.png = test/real/leak.png" in text
    assert "PROBLEMS FOUND" in text
    saved = json.loads(manifest.read_text())
    assert len(saved["files"]) == 16 and saved["layout"] == "flat"
    assert all(len(f["sha256"]) == 64 for f in saved["files"])
    assert not any(p.name.endswith(".tmp") for p in manifest.parent.iterdir())


def test_cli_json_output_for_programs(planted, capsys):
    args = _parser().parse_args(["data", "verify", str(planted), "--json", "--no-manifest"])
    assert args.func(args) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["exit_status"] == 1 and out["manifest"] is None and "files" not in out
    assert out["bad_files"][0]["error"] == "truncated"
    assert len(out["leaks"]) == 1


def test_clean_folder_passes_and_strict_counts_duplicates(tmp_path, capsys):
    root = tmp_path / "clean"
    _img(root / "real" / "a.png", 1)
    _img(root / "fake" / "b.png", 2)
    args = _parser().parse_args(["data", "verify", str(root), "--no-progress"])
    assert args.func(args) == 0
    assert (root / data_cli.MANIFEST_NAME).is_file()
    assert "OK" in capsys.readouterr().out
    shutil.copy(root / "fake" / "b.png", root / "fake" / "c.png")
    args = _parser().parse_args(["data", "verify", str(root), "--no-progress", "--no-manifest"])
    assert args.func(args) == 0  # a plain duplicate is a warning ...
    args = _parser().parse_args(["data", "verify", str(root), "--no-progress", "--no-manifest", "--strict"])
    assert args.func(args) == 1  # ... unless --strict


def test_unrecognised_folder_exits_2_with_the_expected_layouts(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = _parser().parse_args(["data", "verify", str(tmp_path / "empty")])
    assert args.func(args) == 2
    assert "recognises these layouts" in capsys.readouterr().err


def test_no_decode_mode_hashes_headers_only(planted):
    report = verify_dataset(planted, decode=False, progress=False, workers=1)
    assert not report.decoded
    assert all(f.pixel_sha256 is None for f in report.files)
    assert ["train/fake/0.png", "train/fake/copy.png"] in report.duplicates
    assert report.label_conflicts == []  # different bytes: only decoding finds this one
