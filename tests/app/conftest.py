"""A detector trained once per session on the quick mini-benchmark, and the app served from it.

The quick mini-benchmark (``hrrkit.datasets``, the one ``hrrkit demo --quick`` uses) lives in the
hrrkit cache (``HRRKIT_CACHE``, default ``~/.cache/hrrkit``): built once per machine (about 3 min on
two busy cores), verified and reused in under a second after that. The detector is the DIRE-style
preset sized for 32–40 px images with the weight-free blur retrospector, trained for a few epochs
(``TRAIN_EPOCHS``).

Gradio and Selenium come with the ``dev`` extra, so these tests do not skip without them: a missing
package fails with the install hint. Only the browser test skips, where chromium is absent.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from hrrkit.cli import main
from hrrkit.testing.synthetic_layouts import tiny_run_config

TRAIN_EPOCHS = 6


@pytest.fixture(scope="session")
def app_model(tmp_path_factory) -> dict:
    """``{"model": detector folder, "real": [paths], "fake": [paths], "bench": MiniBenchmark}``; the
    real and generated images are test_seen images the detector never trained on."""
    from hrrkit.datasets import build_mini_benchmark

    bench = build_mini_benchmark(quick=True, progress=False)
    tmp = tmp_path_factory.mktemp("app_detector")
    run = tiny_run_config(
        bench.manifest, tmp / "run", epochs=TRAIN_EPOCHS,
        detector={"preset": "dire", "input": {"policy": "random_crop", "eval_policy": "native", "crop_size": 32,
                                              "augment": "none"},
                  "backbone": {"name": "compact_cnn", "options": {"width": 8, "depth": 2}},
                  "retrospector": {"kind": "blur", "path": None}},  # weight-free: seconds, not minutes
        data={"train_split": "train", "val_split": "val", "test_split": "test_seen"},
        train={"batch_size": 16, "lr": 3e-3},
    )
    config = tmp / "run.yaml"
    config.write_text(yaml.safe_dump(run))
    assert main(["train", str(config), "--no-progress"]) == 0
    test = bench.samples("test_seen")
    return {"model": tmp / "run" / "best", "bench": bench,
            "real": [s.path for s in test if s.label == 0], "fake": [s.path for s in test if s.label == 1]}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(app_model, tmp_path_factory):
    """``hrrkit app --model ...`` running in a subprocess on a free local port: yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("app_server") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "NO_PROXY": "127.0.0.1,localhost"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hrrkit", "app", "--model", str(app_model["model"]),
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"hrrkit app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"hrrkit app did not answer on {base} within 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": base, "log": log, "process": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    # a terminated app exits cleanly and leaves no upload folder behind
    uploads = re.search(r"uploads are kept in (\S+) and removed on exit", log.read_text())
    assert proc.returncode == 0 and uploads, log.read_text()[-2000:]
    assert not Path(uploads.group(1)).exists()


@pytest.fixture
def bad_file(tmp_path) -> Path:
    """A text file with an image extension: the loader refuses it (NotAnImageError)."""
    path = tmp_path / "not_really.png"
    path.write_text("this is not an image\n")
    return path
