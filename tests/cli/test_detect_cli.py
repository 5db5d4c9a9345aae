"""``hrrkit detect`` on a folder mixing good images and every kind of bad file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrrkit.cli import main
from hrrkit.testing.image_corpus import write_corpus


def _corpus(folder: Path) -> tuple[dict[str, object], dict[str, object]]:
    written = write_corpus(folder)
    good = {str(p): c for p, c in written.items() if c.is_good}
    bad = {str(p): c for p, c in written.items() if not c.is_good}
    assert good and bad
    return good, bad


def test_detect_scores_every_good_file_and_lists_every_bad_one(tmp_path, trained, capsys):
    good, bad = _corpus(tmp_path / "mixed")
    out = tmp_path / "scores.jsonl"
    code = main(["detect", str(tmp_path / "mixed"), "--model", str(trained["model"]), "--out", str(out),
                 "--no-progress"])
    assert code == 3  # some files failed
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == set(good) | set(bad)
    for path in good:
        r = rows[path]
        assert r["error"] is None and 0.0 <= r["score"] <= 1.0 and r["label"] in ("real", "generated"), r
        assert set(r["scale_scores"]) == {"0.5", "1", "2"}
    for path, case in bad.items():
        r = rows[path]
        assert r["score"] is None and r["label"] is None
        assert r["error"].startswith(case.error.__name__ + ":"), (path, r["error"])
    err = capsys.readouterr().err
    assert f"{len(good)} scored" in err and f"{len(bad)} unreadable" in err
    for path in bad:
        assert f"skipped {path}:" in err


def test_detect_strict_stops_at_the_first_bad_file(tmp_path, trained):
    folder = tmp_path / "two"
    folder.mkdir()
    Image.fromarray(np.full((20, 23, 3), 128, np.uint8)).save(folder / "a_good.png")
    (folder / "b_bad.png").write_bytes(b"")
    Image.fromarray(np.full((20, 23, 3), 90, np.uint8)).save(folder / "c_good.png")
    out = tmp_path / "scores.jsonl"
    assert main(["detect", str(folder), "--model", str(trained["model"]), "--out", str(out), "--strict",
                 "--no-progress"]) == 3
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["a_good.png", "b_bad.png"]  # c_good.png never reached
    # without --strict every file is scored or reported
    assert main(["detect", str(folder), "--model", str(trained["model"]), "--out", str(out), "--no-progress"]) == 3
    assert len(out.read_text().splitlines()) == 3
    # all good: exit 0
    (folder / "b_bad.png").unlink()
    assert main(["detect", str(folder), "--model", str(trained["model"]), "--out", str(out), "--no-progress"]) == 0


def test_detect_csv_globs_threshold_and_maps(tmp_path, trained):
    test_real = trained["data"] / "test" / "real"
    test_fake = trained["data"] / "test" / "fake"
    # two files that share a stem in different folders (and one extension twin) must not share maps
    twin_dir = tmp_path / "twins"
    twin_dir.mkdir()
    first_real = sorted(test_real.glob("*.png"))[0]
    Image.open(first_real).save(twin_dir / first_real.name)
    Image.open(first_real).convert("RGB").save(twin_dir / (first_real.stem + ".jpg"))
    out = tmp_path / "scores.csv"
    maps = tmp_path / "maps"
    code = main(["detect", str(test_real / "*.png"), str(test_fake), str(twin_dir), "--model", str(trained["model"]),
                 "--out", str(out), "--maps", str(maps), "--threshold", "0.5", "--no-progress"])
    assert code == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    n_files = len(list(test_real.glob("*.png"))) + len(list(test_fake.rglob("*.png"))) + 2
    assert len(rows) == n_files
    assert list(rows[0]) == ["path", "score", "label", "threshold", "scale_scores", "note", "error", "maps"]
    for r in rows:
        assert float(r["threshold"]) == 0.5 and r["error"] == ""
        assert r["label"] == ("generated" if float(r["score"]) >= 0.5 else "real")
        assert set(json.loads(r["scale_scores"])) == {"0.5", "1", "2"}
        figure, arrays = r["maps"].split(";")
        assert figure.endswith("_evidence.png") and arrays.endswith("_evidence.npz")
        assert Path(figure).is_file() and Path(arrays).is_file()
    assert len({p for r in rows for p in r["maps"].split(";")}) == 2 * n_files  # no map overwritten
    img = Image.open(rows[0]["maps"].split(";")[0])
    assert img.mode == "RGB" and min(img.size) >= 64
    with np.load(rows[0]["maps"].split(";")[1]) as npz:
        assert {"map_0.5", "map_1", "map_2", "canvas", "score"} <= set(npz.files)
        assert float(npz["score"]) == pytest.approx(float(rows[0]["score"]))
        assert npz["map_2"].size > npz["map_0.5"].size  # feature resolution grows with the scale
    # the trained detector separates the test fakes from the test reals
    labels = ["/fake/" in r["path"] for r in rows if "/twins/" not in r["path"]]
    scores = [float(r["score"]) for r in rows if "/twins/" not in r["path"]]
    from sklearn.metrics import average_precision_score

    assert average_precision_score(labels, scores) > 0.9


def test_detect_reports_bad_arguments(tmp_path, trained, capsys):
    model = str(trained["model"])
    assert main(["detect", str(tmp_path / "nothing_here"), "--model", model, "--no-progress"]) == 2
    assert "nothing_here: no such file or folder" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "*.png"), "--model", model, "--no-progress"]) == 2
    # one good path and one that names nothing: the good one is scored, the exit status says 3
    image = next((trained["data"] / "test" / "real").glob("*.png"))
    assert main(["detect", str(image), str(tmp_path / "gone.png"), "--model", model, "--no-progress"]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[0])["path"] == str(image) and "gone.png" in captured.err
    assert main(["detect", str(image), "--model", str(tmp_path), "--no-progress"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_detect_help_explains_batching_and_every_column(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size N most images per forward pass (default: 16)" in text
    assert "--pixel-budget PIXELS" in text and "(default: 2000000" in text
    for column in ("score", "label", "scale_scores", "note", "error"):
        assert f" {column} " in text
    assert "not their mean" in text and "unsure" in text


def test_detect_profile_prints_and_writes_the_time_and_memory_of_every_stage(tmp_path, trained, capsys):
    folder = tmp_path / "few"
    folder.mkdir()
    for i, size in enumerate([(20, 23), (40, 31), (20, 23)]):
        Image.fromarray(np.full((*size, 3), 60 + 40 * i, np.uint8)).save(folder / f"{i}.png")
    profile = tmp_path / "profile.json"
    assert main(["detect", str(folder), "--model", str(trained["model"]), "--out", str(tmp_path / "s.csv"),
                 "--profile-json", str(profile), "--maps", str(tmp_path / "maps"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    payload = json.loads(profile.read_text())
    stages = {s["stage"]: s for s in payload["stages"]}
    assert {"decode", "rescale", "backbone", "head", "evidence"} <= set(stages)
    assert payload["images"] == 3 and payload["maps"] and payload["batch_size"] == 16
    for row in stages.values():
        assert row["calls"] >= 1 and row["seconds"] >= 0
        assert row["images_per_s"] is None or row["images_per_s"] == pytest.approx(3 / row["seconds"])
        if payload["memory_per_stage"]:
            assert 0 < row["peak_rss_mb"] <= payload["peak_rss_mb"] and row["growth_mb"] >= 0
    table = err[err.index("profile (batch size 16"):]
    assert all(f"\n{name} " in table for name in stages) and "(3 images)" in table
