"""The prepared GPU training command runs, here on the CPU with a tiny network."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_masked_transformer_gpu.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_training_script_trains_both_networks(image_folder, tmp_path):
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
        "MIT_DEVICE": "cpu",
        "MIT_WIDTHS": "8,2,1",
        "MIT_ITERATIONS": "2",
        "MIT_BATCH": "2",
        "MIT_VAL_EVERY": "1",
        "MIT_DATA": str(image_folder),
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, masked in (
        ("masked-transformer-large", True),
        ("masked-transformer-large-unmasked", False),
    ):
        entry = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert entry["masked"] is masked and entry["finished"] is True
        assert entry["architecture"]["widths"] == [8, 2, 1] and entry["device"] == "cpu"
        assert entry["iterations"] == 2 and (tmp_path / "out" / f"{name}.pt").is_file()
        rows = (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(r)["iteration"] for r in rows] == [1, 2]
