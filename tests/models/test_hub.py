"""Hub-style loading (hrrkit.models.hub): local folders, a pre-filled huggingface_hub cache, the model
card, and push_to_hub with the upload mocked. No test touches the network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch

from hrrkit.models.checkpoint import save_detector
from hrrkit.models.config import DetectorConfig
from hrrkit.models.detector import HRRDetector
from hrrkit.models.hub import (
    HUB_FILES,
    MODEL_CARD_FILE,
    HubError,
    detector_card,
    from_pretrained,
    push_to_hub,
    save_pretrained,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _tiny_config() -> DetectorConfig:
    return DetectorConfig(name="hrr-tiny").replace(**{
        "backbone.options": {"width": 4, "depth": 2}, "style.levels": [1, 2], "input.crop_size": 24,
        "threshold": 0.42, "retrospector.kind": "blur", "retrospector.path": None,  # no weights: fast
    })


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A ``hrrkit train``-shaped run folder: run config, ``best/`` and ``test_report/report.json``."""
    run = tmp_path_factory.mktemp("hub") / "run"
    torch.manual_seed(0)
    model = HRRDetector(_tiny_config())
    with torch.no_grad():  # non-trivial weights, so a round trip that dropped them would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_detector(model, run / "best", extra={"epoch": 2, "val_ap": 0.875})
    (run / "config.json").write_text(json.dumps({
        "detector": model.config.to_dict(),
        "data": {"root": "/data/mini/manifest.csv", "layout": "csv", "train_split": "train", "val_split": "val",
                 "test_split": "test_seen", "val_fraction": 0.1, "train_generators": None},
        "train": {"epochs": 3}, "output_dir": str(run), "device": "cpu"}))
    (run / "test_report").mkdir()
    (run / "test_report" / "report.json").write_text(json.dumps({
        "n_images": 32, "threshold": 0.42,
        "overall": {"n_real": 16, "n_fake": 16, "ap": 0.9375, "roc_auc": 0.95, "acc": 0.875, "oracle_acc": 1.0}}))
    return run


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, 30, 34, generator=g) * 2 - 1, torch.rand(3, 41, 27, generator=g) * 2 - 1]


def _no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a local folder must not reach huggingface_hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


def test_card_reads_the_run_it_was_trained_in(run_folder):
    card = detector_card(run_folder / "best")
    assert card["name"] == "hrr-tiny" and card["threshold"] == pytest.approx(0.42)
    assert card["training_data"]["root"] == "/data/mini/manifest.csv" and card["training_data"]["epochs"] == 3
    assert card["validation"] == {"best_epoch": 2, "ap": 0.875}
    assert card["test"]["split"] == "test_seen" and card["test"]["overall"]["ap"] == 0.9375
    assert "oracle_acc" not in card["test"]["overall"]  # the optimistic number is not advertised
    assert card["retrospector"]["kind"] == "blur" and card["license"] is None


def test_local_folder_loads_offline_and_round_trips_through_save_pretrained(run_folder, tmp_path, monkeypatch):
    _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = from_pretrained(HRRDetector, run_folder / "best")
    assert model.card["validation"]["ap"] == 0.875 and model.source == str(run_folder / "best")
    out = save_pretrained(model, tmp_path / "export", license="cc-by-nc-4.0")
    assert sorted(p.name for p in out.iterdir()) == sorted(HUB_FILES)

    readme = (out / MODEL_CARD_FILE).read_text()
    assert readme.startswith("---\nlicense: cc-by-nc-4.0\nlibrary_name: hrrkit\n")
    for fact in ("/data/mini/manifest.csv", "0.875", "0.9375", "threshold**: 0.42", "`blur`", "test_seen"):
        assert fact in readme, fact

    # the exported folder no longer sits in the run, yet keeps the facts (config.json extra.card)
    again = from_pretrained(HRRDetector, out)
    assert again.card["training_data"] == model.card["training_data"]
    assert again.card["test"] == model.card["test"] and again.card["license"] == "cc-by-nc-4.0"
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert [p["score"] for p in again.predict(_images())] == pytest.approx([p["score"] for p in model.predict(_images())])


def _fill_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """huggingface_hub's cache layout: models--owner--name/{refs/main, snapshots/<commit>/<files>}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in HUB_FILES:
        shutil.copy(folder / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def test_hub_name_resolves_from_a_prefilled_cache_with_hf_hub_offline(run_folder, tmp_path, monkeypatch):
    local = from_pretrained(HRRDetector, run_folder / "best")
    exported = save_pretrained(local, tmp_path / "export")
    cache = tmp_path / "hub-cache"
    snapshot = _fill_hub_cache(cache, "someone/hrr-tiny", exported)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = from_pretrained(HRRDetector, "someone/hrr-tiny", cache_dir=cache)
    assert Path(model.source) == snapshot and model.card["validation"]["ap"] == 0.875
    assert [p["score"] for p in model.predict(_images())] == pytest.approx([p["score"] for p in local.predict(_images())])
    pinned = from_pretrained(HRRDetector, "someone/hrr-tiny", cache_dir=cache, revision=COMMIT)
    assert Path(pinned.source) == snapshot


def test_a_name_missing_from_the_cache_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match=r"someone/absent: not found in .*HF_HUB_OFFLINE=1 is set"):
        from_pretrained(HRRDetector, "someone/absent", cache_dir=tmp_path / "empty-cache")
    with pytest.raises(HubError, match="local_files_only=True"):
        monkeypatch.delenv("HF_HUB_OFFLINE")
        from_pretrained(HRRDetector, "someone/absent", cache_dir=tmp_path / "empty-cache", local_files_only=True)


def test_a_path_that_is_not_a_folder_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(HubError, match="no such detector folder"):
        from_pretrained(HRRDetector, str(tmp_path / "runs" / "nothing" / "best"))
    with pytest.raises(HubError, match="no such detector folder"):
        from_pretrained(HRRDetector, "./best")


class _FakeHfApi:
    """Records what push_to_hub would send; reads the upload folder while it still exists."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.calls.append(("upload_folder", {**kwargs, "files": files}))
        return "commit-info"


def test_push_to_hub_uploads_exactly_the_hub_folder(run_folder, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeHfApi)
    _FakeHfApi.calls = []
    model = from_pretrained(HRRDetector, run_folder / "best")
    assert push_to_hub(model, "me/hrr-tiny", private=True, token="hf_x", license="mit") == "commit-info"
    (create, c_args), (upload, u_args) = _FakeHfApi.calls
    assert create == "create_repo" and c_args == {"repo_id": "me/hrr-tiny", "private": True, "exist_ok": True,
                                                  "repo_type": "model"}
    assert upload == "upload_folder" and u_args["repo_id"] == "me/hrr-tiny" and u_args["repo_type"] == "model"
    assert sorted(u_args["files"]) == sorted(HUB_FILES) and sorted(u_args["allow_patterns"]) == sorted(HUB_FILES)
    assert not Path(u_args["folder_path"]).exists()  # the staging folder is temporary
    payload = json.loads(u_args["files"]["config.json"])
    assert payload["extra"]["card"]["training_data"]["root"] == "/data/mini/manifest.csv"
    assert b"license: mit" in u_args["files"][MODEL_CARD_FILE]


def test_push_to_hub_refuses_a_retrospector_whose_weights_stay_behind(run_folder, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeHfApi)
    _FakeHfApi.calls = []
    model = from_pretrained(HRRDetector, run_folder / "best")
    model.config.retrospector.path = "/home/me/weights/unet.safetensors"
    with pytest.raises(HubError, match="not uploaded"):
        push_to_hub(model, "me/hrr-tiny")
    assert _FakeHfApi.calls == []
    model.config.retrospector.path = "hrrkit:real-photo-unet"  # shipped inside the package: portable
    push_to_hub(model, "me/hrr-tiny")
    assert [call for call, _ in _FakeHfApi.calls] == ["create_repo", "upload_folder"]
    assert b"(shipped with hrrkit)" in _FakeHfApi.calls[1][1]["files"][MODEL_CARD_FILE]


def test_the_detector_class_has_the_hub_methods(run_folder, tmp_path):
    model = HRRDetector.from_pretrained(run_folder / "best")
    assert isinstance(model, HRRDetector) and model.card["name"] == "hrr-tiny"
    assert (model.save_pretrained(tmp_path / "m") / MODEL_CARD_FILE).is_file()
    assert callable(model.push_to_hub)


def test_the_card_states_an_unsure_band(run_folder, tmp_path):
    model = from_pretrained(HRRDetector, run_folder / "best")
    assert model.card["band"] is None
    model.config.unsure = (0.3, 0.7)
    out = save_pretrained(model, tmp_path / "banded")
    assert detector_card(out)["band"] == [0.3, 0.7]
    assert "**unsure band**: [0.3, 0.7]" in (out / MODEL_CARD_FILE).read_text()
