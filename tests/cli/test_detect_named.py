"""``hrrkit detect`` with a named model (shipped ``hrrkit:<name>``), ``--about`` and no paths."""

from __future__ import annotations

from hrrkit.cli import main
from hrrkit.models.detector import load_detector


def test_about_prints_the_model_card_of_a_folder(tmp_path, trained, capsys):
    folder = load_detector(trained["model"]).save_pretrained(tmp_path / "hub")
    assert main(["detect", "--about", "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out == (folder / "README.md").read_text() + "\n" and "library_name: hrrkit" in out


def test_an_unknown_shipped_name_lists_what_ships(capsys):
    assert main(["detect", "x.png", "--model", "hrrkit:no-such-detector", "--no-progress"]) == 2
    assert "hrrkit:no-such-detector: no such shipped detector; this hrrkit ships" in capsys.readouterr().err


def test_no_paths_is_a_clear_error(trained, capsys):
    assert main(["detect", "--model", str(trained["model"])]) == 2
    assert "give image files, folders or globs" in capsys.readouterr().err


def test_a_folder_without_a_card_says_so(trained, capsys):
    assert main(["detect", "--about", "--model", str(trained["model"])]) == 2
    assert "has no model card" in capsys.readouterr().err
