"""The app's JSON API (in-process, and the documented curl command against the served app), the
scoring behind it, and the ``hrrkit app`` command's errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from starlette.testclient import TestClient

from hrrkit.app import MAX_IMAGES_PER_REQUEST, create_app, score_uploads
from hrrkit.cli import main
from hrrkit.eval.predict import detect_files
from hrrkit.models.detector import HRRDetector


@pytest.fixture(scope="module")
def detector(app_model):
    return HRRDetector.from_pretrained(app_model["model"])


@pytest.fixture(scope="module")
def client(detector):
    with TestClient(create_app(detector, max_file_mb=1.0)) as c:
        yield c


def _cli_rows(detector, paths):
    return {r["path"]: r for r in detect_files(detector, paths).rows}


def test_detect_answers_one_row_per_file_with_the_clis_numbers(client, detector, app_model, bad_file):
    real, fake, bad = app_model["real"][0], app_model["fake"][0], bad_file
    files = [("file", (p.name, p.read_bytes())) for p in (real, fake, bad)]
    response = client.post("/api/detect", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["detector"] == detector.config.name and body["threshold"] == detector.config.threshold
    rows = body["results"]
    assert [r["name"] for r in rows] == [real.name, fake.name, bad.name]
    expected = _cli_rows(detector, [real, fake])
    for row, path in zip(rows, (real, fake)):
        cli = expected[str(path)]
        assert row["score"] == pytest.approx(cli["score"], abs=1e-6) and row["verdict"] == cli["label"]
        assert row["scale_scores"] == pytest.approx(cli["scale_scores"], abs=1e-6)
        assert row["error"] is None and row["width"] > 0 and "path" not in row
    assert rows[2]["score"] is None and rows[2]["verdict"] is None
    assert rows[2]["error"].startswith("NotAnImageError: ")


def test_detect_takes_raw_bytes_and_returns_maps_on_request(client, app_model):
    real = app_model["real"][1]
    response = client.post(f"/api/detect?maps=1&name={real.name}", content=real.read_bytes(),
                           headers={"content-type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    (row,) = response.json()["results"]
    assert row["name"] == real.name and row["verdict"] in ("real", "generated", "unsure")
    assert set(row["maps"]) == set(row["scale_scores"])
    grid = np.asarray(row["maps"]["1"], dtype=np.float64)  # logit contribution per feature cell
    assert grid.ndim == 2 and grid.shape[0] > 1 and np.isfinite(grid).all() and np.abs(grid).max() > 0


def test_detect_refuses_no_file_too_large_and_too_many(client, app_model):
    assert client.post("/api/detect", content=b"").status_code == 400
    big = ("file", ("big.png", b"\x89PNG" + b"\0" * 1_100_000))
    response = client.post("/api/detect", files=[big])
    assert response.status_code == 413 and "upload limit" in response.json()["detail"]
    real = app_model["real"][0]
    many = [("file", (f"{i}.png", real.read_bytes())) for i in range(MAX_IMAGES_PER_REQUEST + 1)]
    assert client.post("/api/detect", files=many).status_code == 413


def test_card_and_health(client, detector, app_model):
    card = client.get("/api/card").json()
    assert card["name"] == detector.config.name and card["threshold"] == detector.config.threshold
    assert card["training_data"]["root"] == str(app_model["bench"].manifest)
    assert card["validation"]["ap"] is not None and card["test"]["split"] == "test_seen"
    assert client.get("/api/health").json()["status"] == "ok"


def test_page_handler_shows_verdicts_evidence_and_the_loaders_message(detector, app_model, bad_file):
    from hrrkit.app.server import Scorer

    scorer = Scorer(detector, card=detector.card, max_file_bytes=10**6)
    real, fake, bad = app_model["real"][0], app_model["fake"][0], bad_file
    html, rows = scorer.page([str(real), str(fake), str(bad)])
    assert [r["name"] for r in rows] == [real.name, fake.name, bad.name]
    assert html.count('class="hrrkit-evidence"') == 2 and html.count('class="hrrkit-retrospection"') == 2
    assert html.count("data:image/png;base64,") == 4 and html.count("hrrkit-evidence-caption") == 2
    assert "Cannot read this file: NotAnImageError" in html and "Traceback" not in html
    for row in rows[:2]:
        assert f"hrrkit-verdict-{row['verdict']}" in html and f"{row['score']:.4f}" in html


def test_score_uploads_keeps_order_and_names_for_bytes_and_paths(detector, app_model):
    real, fake = app_model["real"][0], app_model["fake"][0]
    results = score_uploads(detector, [("a/../x.png", fake.read_bytes()), (real.name, real)], with_maps=False)
    assert [r.name for r in results] == ["a/../x.png", real.name]
    assert all(r.ok and r.prediction == {} for r in results)


def test_the_documented_curl_command_against_the_served_app(app_server, app_model):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    fake = app_model["fake"][0]
    out = subprocess.run(["curl", "-sS", "-F", f"file=@{fake}", f"{app_server['url']}/api/detect"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    (row,) = json.loads(out)["results"]
    assert row["name"] == fake.name and row["verdict"] in ("real", "generated", "unsure") and row["error"] is None


def test_app_command_errors_exit_2_with_the_reason(tmp_path, capsys):
    assert main(["app", "--model", str(tmp_path / "nothing")]) == 2
    assert "no such detector folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["app", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--host", "--port", "--max-file-mb", "--max-pixels", "--save", "127.0.0.1"):
        assert option in help_text


def test_without_gradio_the_command_says_how_to_install(app_model, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    before = os.environ.get("GRADIO_TEMP_DIR")
    assert main(["app", "--model", str(app_model["model"])]) == 2
    assert "pip install 'hrrkit[app]'" in capsys.readouterr().err
    assert os.environ.get("GRADIO_TEMP_DIR") == before  # the temporary upload folder is undone too


def test_an_unsure_band_gives_unsure_on_the_page_and_in_the_api(app_model):
    from hrrkit.app.server import Scorer

    banded = HRRDetector.from_pretrained(app_model["model"])
    real = app_model["real"][0]
    score = detect_files(banded, [real]).rows[0]["score"]
    banded.config.unsure = (max(0.0, score - 0.05), min(1.0, score + 0.05))
    html, (row,) = Scorer(banded, card=banded.card, max_file_bytes=10**6).page([str(real)])
    assert row["verdict"] == "unsure" and "hrrkit-verdict-unsure" in html and "<i>unsure</i> from" in html
    with TestClient(create_app(banded)) as client:
        body = client.post("/api/detect", files=[("file", (real.name, real.read_bytes()))]).json()
    assert body["unsure"] == pytest.approx(list(banded.config.unsure)) and body["results"][0]["verdict"] == "unsure"


def test_page_keeps_a_too_large_file_in_its_place_with_the_reason(detector, app_model):
    from hrrkit.app.server import Scorer

    small, large = sorted({app_model["real"][0], app_model["fake"][0]}, key=lambda p: p.stat().st_size)
    limit = (small.stat().st_size + large.stat().st_size) // 2
    assert small.stat().st_size <= limit < large.stat().st_size
    _, rows = Scorer(detector, card=detector.card, max_file_bytes=limit).page([str(large), str(small)])
    assert rows[0]["error"].startswith("FileTooLarge: ") and rows[0]["name"] == large.name
    assert rows[1]["error"] is None and rows[1]["name"] == small.name
