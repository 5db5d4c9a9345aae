"""``hrrkit train`` under ``torchrun --nproc-per-node 2`` (gloo on CPU): both ranks train in
lockstep, rank 0 validates and writes a loadable ``best/`` detector."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch
import yaml

from hrrkit.models.detector import load_detector
from hrrkit.testing.synthetic_layouts import tiny_run_config, write_synthetic_layout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes_produce_a_loadable_best(tmp_path):
    root = write_synthetic_layout(tmp_path / "data", "flat", per_class=6, seed=5)
    # one unreadable training file: the rank that meets it must not desynchronise the other
    (root / "train" / "real" / "broken.png").write_bytes(b"not a png")
    config = tiny_run_config(root, tmp_path / "run", epochs=2, train={"batch_size": 4})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "hrrkit", "train", str(path), "--no-progress"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = tmp_path / "run"
    epochs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"epoch"' in x]
    assert [r["epoch"] for r in epochs if r["event"] == "epoch"] == [0, 1]  # rank 0 alone logs
    detector = load_detector(run / "best")
    assert detector.config.backbone.options == {"width": 8, "depth": 2}
    scores = detector.predict([torch.rand(3, 30, 27) * 2 - 1])
    assert 0.0 <= scores[0]["score"] <= 1.0
    assert (run / "test_report" / "report.json").is_file()
    skipped = json.loads((run / "skipped_files.json").read_text())
    assert [s["path"].rsplit("/", 1)[-1] for s in skipped] == ["broken.png"]  # met by either rank
