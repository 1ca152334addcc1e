import json
import os
import shutil
import subprocess
import sys

import pytest


def test_torchrun_two_cpu_processes_match_single_process(tmp_path, tiny_args):
    """DDP over gloo with 2 ranks, each half of every global batch, equals one process training
    on the whole batch (up to float summation order)."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.fail("torchrun is not installed next to the test interpreter")
    args = ["run", "--method", "ckpe", *tiny_args, "--epochs", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "harness.cli", *args, "--results-dir", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "harness.cli", *args,
                            "--results-dir", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.count("ckpe | synthetic") == 1  # rank 0 alone reports
    one = json.loads(next((tmp_path / "one").glob("*.json")).read_text())
    two = json.loads(next((tmp_path / "two").glob("*.json")).read_text())
    assert two["timing"]["processes"] == 2 and one["timing"]["processes"] == 1
    assert one["split"]["fingerprint"] == two["split"]["fingerprint"]
    for a, b in zip(one["history"], two["history"]):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, abs(a["loss"]))
    for k in ("top1", "top5", "mAP"):
        assert abs(one["metrics"][k] - two["metrics"][k]) <= 1.0, k
