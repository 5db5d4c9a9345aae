"""``hrrkit data align`` and ``hrrkit zero-shot`` from the command line, with tiny autoencoders."""

from __future__ import annotations

import csv
import json

import pytest

from hrrkit.cli import main
from hrrkit.testing.aligned import save_tiny_autoencoders, write_photos


@pytest.fixture()
def setup(tmp_path):
    aes = save_tiny_autoencoders(tmp_path / "ae")
    write_photos(tmp_path / "photos", count=5, png=1)
    return tmp_path, aes


def test_align_writes_resumes_and_reports_cost(setup, capsys):
    tmp, aes = setup
    args = ["data", "align", str(tmp / "photos"), "--vae", str(aes["ae4"]), "--vae", f"big={aes['ae16']}",
            "--out", str(tmp / "out"), "--jpeg-match", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "6 photos: 18 files written, 0 already done, 0 unreadable" in out and "ae4 " in out and "big " in out
    assert main(args) == 0
    assert "0 files written, 6 already done" in capsys.readouterr().out
    manifest = json.loads((tmp / "out" / "aligned.json").read_text())
    assert set(manifest["settings"]["autoencoders"]) == {"ae4", "big"} and manifest["settings"]["jpeg_match"]
    assert set(manifest["summary"]["seconds_per_image"]) == {"ae4", "big"}
    assert {p.parent.name for p in (tmp / "out").rglob("fake/*/*.png")} == {"ae4", "big"}


def test_align_names_what_is_wrong(setup, capsys):
    tmp, aes = setup
    assert main(["data", "align", str(tmp / "photos"), "--vae", str(tmp / "nowhere"), "--out", str(tmp / "o"),
                 "--no-progress"]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert main(["data", "align", str(tmp / "photos"), "--vae", str(aes["ae4"]), "--out", str(tmp / "o"),
                 "--no-progress"]) == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_zero_shot_scores_files_and_evaluates_a_labelled_folder(setup, capsys):
    tmp, aes = setup
    assert main(["data", "align", str(tmp / "photos"), "--vae", str(aes["ae4"]), "--out", str(tmp / "out"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    rows_file = tmp / "scores.csv"
    assert main(["zero-shot", str(tmp / "out"), "--vae", str(aes["ae4"]), "--distance", "l2", "--out",
                 str(rows_file), "--threshold", "0.9", "--no-progress"]) == 0
    rows = list(csv.DictReader(rows_file.open()))
    assert len(rows) == 12 and all(r["autoencoder"] == "ae4" and r["label"] in ("real", "generated") for r in rows)
    fake = [float(r["score"]) for r in rows if "/fake/" in r["path"]]
    real = [float(r["score"]) for r in rows if "/real/" in r["path"]]
    assert min(fake) > max(real)
    report = tmp / "report"
    assert main(["zero-shot", "--eval", str(tmp / "out"), "--vae", str(aes["ae4"]), "--distance", "l2",
                 "--out", str(report), "--no-progress"]) == 0
    payload = json.loads((report / "report.json").read_text())
    assert payload["n_images"] == 12 and payload["overall"]["roc_auc"] == 1.0
    assert "autoencoder round trip" in (report / "report.md").read_text()
    assert main(["zero-shot", "--vae", str(aes["ae4"])]) == 2  # neither PATHS nor --eval
