"""Crash safety of ``hrrkit train``: a run killed with SIGKILL resumes to the very weights of an
uninterrupted run; partial checkpoint folders are never used; a non-finite loss stops training
with a clear message and keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hrrkit.cli import main
from hrrkit.models.detector import HRRDetector
from hrrkit.testing.synthetic_layouts import tiny_run_config, write_synthetic_layout
from hrrkit.train import trainer
from hrrkit.train.recipe import load_run_config, make_datasets, split_samples

EPOCHS = 3


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_synthetic_layout(tmp_path_factory.mktemp("resume_data"), "flat", per_class=12, seed=3)


def _config(tmp: Path, data_root: Path, name: str, **train) -> Path:
    config = tiny_run_config(data_root, tmp / name, epochs=EPOCHS, train={"batch_size": 4, **train})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key} differs between {a} and {b}"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_root) -> Path:
    """An uninterrupted run (in this process, one thread, like the subprocesses below)."""
    tmp = tmp_path_factory.mktemp("reference")
    assert main(["train", str(_config(tmp, data_root, "run")), "--no-progress", "--no-test"]) == 0
    return tmp / "run"


def _last_epoch(run: Path) -> int | None:
    try:
        return json.loads((run / "last.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


def test_sigkill_after_first_checkpoint_then_resume_matches_uninterrupted_run(tmp_path, data_root, reference_run):
    config = _config(tmp_path, data_root, "run")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "import sys, torch; torch.set_num_threads(1); from hrrkit.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "train", str(config), "--no-progress", "--no-test"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while _last_epoch(run) is None:
            assert proc.poll() is None, f"training ended before its first checkpoint: {proc.communicate()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = _last_epoch(run)
    assert killed_at is not None and killed_at < EPOCHS - 1, "the kill must land before the run finished"

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"event": "resume", "from_epoch": killed_at}.items() <= next(r for r in log if r["event"] == "resume").items()
    final = f"checkpoints/epoch_{EPOCHS - 1:04d}/model.safetensors"
    _assert_same_weights(run / final, reference_run / final)
    _assert_same_weights(run / "best" / "model.safetensors", reference_run / "best" / "model.safetensors")
    state = json.loads((run / f"checkpoints/epoch_{EPOCHS - 1:04d}/state.json").read_text())
    ref_state = json.loads((reference_run / f"checkpoints/epoch_{EPOCHS - 1:04d}/state.json").read_text())
    assert [r["val_ap"] for r in state["history"]] == [r["val_ap"] for r in ref_state["history"]]


class _Crash(RuntimeError):
    pass


def test_partial_checkpoint_folder_is_never_used(tmp_path, data_root, reference_run):
    """A crash after epoch 0 that left a half-written epoch-1 folder (and, worse, a last.json that
    names it): resuming ignores that folder and still reproduces the uninterrupted run."""
    config = load_run_config(_config(tmp_path, data_root, "run"))
    splits = split_samples(config.data, config.train.seed)

    def crash_after_first_epoch(record):
        if record["epoch"] == 0:
            raise _Crash

    def fit(**kwargs):
        trainer.seed_everything(config.train.seed)
        datasets = make_datasets(config.detector, splits, config.train.seed)
        return trainer.fit(HRRDetector(config.detector), datasets["train"], datasets["val"], config.train,
                           config.output_dir, progress=False, **kwargs)

    with pytest.raises(_Crash):
        fit(on_epoch_end=crash_after_first_epoch)
    run = Path(config.output_dir)
    good = run / "checkpoints" / "epoch_0000"
    partial = run / "checkpoints" / "epoch_0001"
    shutil.copytree(good, partial)
    (partial / "state.json").unlink()  # written last: its absence marks the folder incomplete
    (partial / "model.safetensors").write_bytes(b"\0" * 100)
    (run / "last.json").write_text(json.dumps({"checkpoint": "checkpoints/epoch_0001", "epoch": 1}))

    with pytest.warns(RuntimeWarning, match="incomplete checkpoint"):
        result = fit()
    assert result.epochs_run == EPOCHS
    final = f"checkpoints/epoch_{EPOCHS - 1:04d}/model.safetensors"
    _assert_same_weights(run / final, reference_run / final)


def test_restart_clears_the_previous_run(tmp_path, data_root):
    config = _config(tmp_path, data_root, "run", epochs=1)
    run = tmp_path / "run"
    (run / "checkpoints" / "epoch_0007").mkdir(parents=True)  # a stale folder from an older run
    (run / "last.json").write_text(json.dumps({"checkpoint": "checkpoints/epoch_0007", "epoch": 7}))
    assert main(["train", str(config), "--no-progress", "--no-test", "--restart"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_0000"]
    assert _last_epoch(run) == 0


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    tmp_path, data_root, monkeypatch, capsys
):
    config = _config(tmp_path, data_root, "run")
    run = tmp_path / "run"
    saved: list[int] = []
    real_save = trainer._save_epoch_checkpoint
    real_loss = HRRDetector.compute_loss

    def save_and_count(run_dir, model, optimizer, scheduler, scaler, state, keep):
        real_save(run_dir, model, optimizer, scheduler, scaler, state, keep)
        saved.append(state["epoch"])

    def loss_turns_nan_in_second_epoch(self, output, labels):
        total, parts = real_loss(self, output, labels)
        return (total * float("nan") if saved else total), parts

    monkeypatch.setattr(trainer, "_save_epoch_checkpoint", save_and_count)
    monkeypatch.setattr(HRRDetector, "compute_loss", loss_turns_nan_in_second_epoch)
    assert main(["train", str(config), "--no-progress", "--no-test"]) == 3
    err = capsys.readouterr().err
    assert "not finite" in err and "epoch 2" in err and "epoch_0000" in err and "is kept" in err
    assert saved == [0] and _last_epoch(run) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_0000"]
    kept = load_file(str(run / "checkpoints" / "epoch_0000" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in kept.values() if t.is_floating_point())
    assert (run / "best" / "model.safetensors").is_file()

    # fixed (here: the loss restored), the run resumes from the kept checkpoint and finishes
    monkeypatch.setattr(HRRDetector, "compute_loss", real_loss)
    assert main(["train", str(config), "--no-progress", "--no-test"]) == 0
    assert _last_epoch(run) == EPOCHS - 1
