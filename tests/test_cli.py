import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.engine import records
from harness.engine.records import REQUIRED_KEYS


def run_ok(cli, *args):
    res = cli("run", *args)
    assert res.exit_code == 0, res.output
    return res


def only_result(folder: Path) -> dict:
    files = sorted(folder.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_run_writes_a_complete_record(cli, tiny_args, tmp_path):
    res = run_ok(cli, "--method", "ckpe", "--results-dir", tmp_path, *tiny_args)
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("ckpe | synthetic | disjoint | seed 0 | top-1 ")
    assert "mAP" in line and str(tmp_path) in line
    rec = only_result(tmp_path)
    for key in REQUIRED_KEYS:
        assert key in rec, key
    assert rec["config"]["method"] == "ckpe" and rec["config"]["backbone"] == "nano"
    assert rec["config"]["epochs"] == 2 and rec["config"]["arcface_scale"] == 16.0  # card default kept
    assert rec["protocol"] == "disjoint" and len(rec["split"]["fingerprint"]) == 16
    assert rec["split"]["test_identities"] == 2 and rec["split"]["train_identities"] == 8
    assert len(rec["history"]) == 2 and rec["history"][0]["epoch"] == 1
    assert {"arcface", "ce", "loss"} <= set(rec["history"][0])
    for k in ("top1", "top5", "mAP"):
        assert 0.0 <= rec["metrics"][k] <= 100.0
    assert rec["metrics"]["queries"] == 12
    assert rec["keypoints"]["categories"] == ["left_eye", "right_eye", "nose", "mouth"]
    assert rec["versions"]["torch"] and rec["versions"]["wildlife-datasets"] == "1.0.8"
    assert rec["device"]["type"] == "cpu" and rec["wall_time_s"] > 0
    assert "commit" in rec["git"]
    name = Path(sorted(tmp_path.glob("*.json"))[0]).name
    assert name == f"ckpe_synthetic_{rec['experiment']}_s0.json"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def test_same_seed_same_metrics_and_no_silent_overwrite(cli, tiny_args, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_ok(cli, "--method", "kpe", "--seed", "1", "--results-dir", a, *tiny_args)
    run_ok(cli, "--method", "kpe", "--seed", "1", "--results-dir", b, *tiny_args)
    ra, rb = only_result(a), only_result(b)
    assert ra["metrics"] == rb["metrics"]
    assert ra["history"] == rb["history"]  # losses and lr; timings live in "timing"
    # a rerun into the same folder does not overwrite: it reports the stored result
    before = sorted(a.glob("*.json"))[0].read_text()
    res = run_ok(cli, "--method", "kpe", "--seed", "1", "--results-dir", a, *tiny_args)
    assert "already done" in res.output
    assert sorted(a.glob("*.json"))[0].read_text() == before
    # a different seed is a different file, with different training
    run_ok(cli, "--method", "kpe", "--seed", "2", "--results-dir", a, *tiny_args)
    files = sorted(a.glob("*.json"))
    assert len(files) == 2
    assert json.loads(files[1].read_text())["history"] != ra["history"]


def test_vit_and_random_methods_run(cli, tiny_args, tmp_path):
    run_ok(cli, "--method", "vit", "--seed", "1", "--results-dir", tmp_path, *tiny_args)
    run_ok(cli, "--method", "random", "--num-keypoints", "3", "--results-dir", tmp_path, *tiny_args)
    recs = {json.loads(p.read_text())["config"]["method"]: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert recs["vit"]["keypoints"] is None
    assert recs["random"]["keypoints"]["categories"] == ["random_1", "random_2", "random_3"]
    assert recs["random"]["keypoints"]["provenance"]["source"] == "random"
    assert recs["vit"]["split"]["fingerprint"] == recs["random"]["split"]["fingerprint"]


def test_closed_protocol_run(cli, tiny_args, tmp_path):
    run_ok(cli, "--method", "ckpe", "--protocol", "closed", "--results-dir", tmp_path, *tiny_args)
    rec = only_result(tmp_path)
    assert rec["protocol"] == "closed" and rec["metrics"]["queries"] == 10


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nope"], "unknown method 'nope'; valid methods: ckpe, kpe, random, vit"),
        (["--dataset", "nope"], "unknown dataset 'nope'; valid datasets: "),
        (["--num-keypoints", "7"], "--num-keypoints 7 is out of range: this keypoint set has 4 categories"),
        (["--num-keypoints", "0"], "--num-keypoints must be >= 1"),
        (["--keypoints", "nope"], "unknown keypoint source 'nope'"),
        (["--backbone", "nope"], "unknown backbone 'nope'"),
        (["--image-size", "36"], "image size 36 is not divisible by the patch size 8"),
        (["--batch-size", "1000"], "--batch-size 1000 is larger than the training set"),
        (["--dataset-option", "identities"], "--dataset-option expects KEY=VALUE"),
    ],
)
def test_clear_one_line_errors(cli, tiny_args, tmp_path, args, message):
    res = cli("run", "--results-dir", tmp_path / "r", *tiny_args, *args)
    assert res.exit_code != 0
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert not list((tmp_path / "r").glob("*.json"))


def test_unwritable_results_dir(cli, tiny_args, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = cli("run", "--results-dir", blocker / "results", *tiny_args)
    assert res.exit_code != 0
    assert "is not writable" in res.output and "--results-dir" in res.output
    assert "Traceback" not in res.output


def test_list_shows_everything(cli):
    res = cli("list")
    assert res.exit_code == 0
    for name in ("ckpe", "kpe", "vit", "random", "ground-truth", "synthetic", "micro", "large"):
        assert name in res.output


PLUGIN = '''
from harness import Method, register_method


@register_method("kpe-random", "KPE fed random points (a plugin made in a test)")
def kpe_random():
    return Method(encoding="binary", point_source="random")
'''


def _subprocess_run(tmp_path, env_extra, method, tiny_args):
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, "-m", "harness", "run", "--method", method, "--results-dir", str(tmp_path / "r"), *tiny_args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_plugin_file_in_a_plugin_folder_runs_through_harness_run(tmp_path, tiny_args):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "kpe_random.py").write_text(PLUGIN)
    out = _subprocess_run(tmp_path, {"HARNESS_PLUGIN_PATH": str(plugins)}, "kpe-random", tiny_args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("kpe-random | synthetic | disjoint")
    rec = only_result(tmp_path / "r")
    assert rec["keypoints"]["provenance"]["source"] == "random"
    listing = subprocess.run([sys.executable, "-m", "harness", "list"], capture_output=True, text=True,
                             env={**os.environ, "HARNESS_PLUGIN_PATH": str(plugins)}, timeout=120)
    assert "kpe-random" in listing.stdout and "a plugin made in a test" in listing.stdout


def test_plugin_through_an_entry_point(tmp_path, tiny_args):
    site = tmp_path / "site"
    dist = site / "my_reid_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-reid-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.methods]\nkpe-random = my_reid_plugin\n")
    (site / "my_reid_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = _subprocess_run(tmp_path, env, "kpe-random", tiny_args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("kpe-random | synthetic")


def test_broken_plugin_names_its_file(tmp_path, tiny_args):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("raise RuntimeError('boom')\n")
    out = _subprocess_run(tmp_path, {"HARNESS_PLUGIN_PATH": str(plugins)}, "ckpe", tiny_args)
    assert out.returncode != 0
    assert "broken.py failed to import: boom" in out.stderr
    assert "Traceback" not in out.stderr


def test_git_state_is_read_once_per_process(monkeypatch):
    """A commit made while a long sweep runs must not be credited to the sweep's later records:
    the state is read once, when the process's first run starts."""
    calls = []
    real_run = subprocess.run

    def counting_run(args, **kw):
        calls.append(args)
        return real_run(args, **kw)

    records.git_state.cache_clear()
    monkeypatch.setattr(records.subprocess, "run", counting_run)
    first = records.git_state()
    later = records.git_state()
    assert later == first and len(calls) == 2  # rev-parse and status, once
    records.git_state.cache_clear()
