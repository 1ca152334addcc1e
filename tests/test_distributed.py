import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest


def find_torchrun() -> str:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.fail("torchrun is not installed next to the test interpreter")
    return torchrun


def test_torchrun_two_cpu_processes_match_single_process(tmp_path, tiny_args):
    """DDP over gloo with 2 ranks, each half of every global batch, equals one process training
    on the whole batch (up to float summation order)."""
    torchrun = find_torchrun()
    args = ["run", "--method", "ckpe", *tiny_args, "--epochs", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "harness", *args, "--results-dir", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "harness", *args,
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


# 24 images of 32 x 32 pixels; spin features at 32 px with stride 2 (deterministic, offline)
DS = ["--dataset", "synthetic", "--dataset-option", "identities=6", "--dataset-option", "images_per_identity=4",
      "--dataset-option", "image_size=32"]
SPIN = ["--featurizer", "spin", "--size", "32", "--step", "2", "--batch-size", "4"]
PER_RANK = "propagated on 2 processes; images featurized per rank: 12, 12"


def synthetic_data():
    from harness.data.loaders import get_card, load_dataset

    card = get_card("synthetic")
    return load_dataset(card, {**dict(card.defaults.get("dataset_options") or {}),
                               "identities": "6", "images_per_identity": "4", "image_size": "32"}, None)


def stored_sets(cache):
    return sorted((cache / "keypoints").rglob("*.json")), sorted((cache / "keypoints").rglob("*partial*"))


def assert_same_points(multi, single):
    assert multi.shape == single.shape == (24, 4, 2)
    assert np.isfinite(single).all() and np.isfinite(multi).all()  # every image covered
    np.testing.assert_allclose(multi, single)


def test_torchrun_propagation_shards_images_and_equals_single_process(tmp_path, cli, monkeypatch):
    """2 gloo ranks each featurize half of the images into their own partial file; rank 0 merges
    them into exactly the single-process keypoint set and alone reports; a second run is cached."""
    from harness.keypoints.store import load_keypoint_set

    torchrun = find_torchrun()
    reference = tmp_path / "reference.json"
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "one"))
    out = cli("keypoints", "annotate", *DS, "--source", "ground-truth", "--image", "5", "--name", "gt5")
    assert out.exit_code == 0, out.output
    shutil.copy(next((tmp_path / "one").rglob("gt5.json")), reference)
    prop = ["keypoints", "propagate", *DS, "--reference", str(reference), *SPIN]
    single = cli(*prop, "--quiet")
    assert single.exit_code == 0, single.output
    name = single.output.strip().splitlines()[-1].split(" | ")[0]

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_CACHE": str(tmp_path / "two")}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "harness", *prop]
    multi = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.count(f"{name} | 24 images x 4 keypoints") == 1  # rank 0 alone reports
    # counted by rank 0 from the partial file each rank wrote: both ranks did half of the work
    assert multi.stderr.count(PER_RANK) == 1, multi.stderr[-3000:]
    sets, partials = stored_sets(tmp_path / "two")
    assert [p.name for p in sets] == [f"{name}.json"] and partials == []

    data = synthetic_data()
    one = load_keypoint_set(next((tmp_path / "one").rglob(f"{name}.json")), data)[0]
    two = load_keypoint_set(sets[0], data)[0]
    assert_same_points(two.points, one.points)
    assert two.provenance == one.provenance

    # the cache rule holds on every rank: nothing is featurized (a rank that featurized would
    # write a partial file and wait at a barrier that rank 0, which returned at once, never reaches)
    before = sets[0].stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already propagated, not recomputed") == 1 and "per rank" not in again.stderr
    assert sets[0].stat().st_mtime_ns == before and stored_sets(tmp_path / "two") == (sets, [])


def test_torchrun_run_with_a_keypoint_recipe_shares_the_propagation(tmp_path, monkeypatch):
    """`harness run --keypoints ground-truth@spin` under torchrun: rank 0 annotates, both ranks
    propagate half of the images, and the stored set equals the single-process one."""
    from harness.config import RunConfig
    from harness.keypoints.store import load_keypoint_set
    from harness.data.loaders import get_card
    from harness.keypoints.recipes import from_recipe, parse_recipe
    from harness.keypoints.sets import Target

    recipe = "ground-truth@spin:size=32,step=2,image=5"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_CACHE": str(tmp_path / "two")}
    args = ["run", "--method", "ckpe", *DS, "--allow-small-test", "--backbone", "nano", "--image-size", "32", "--epochs", "1",
            "--batch-size", "8", "--keypoints", recipe, "--results-dir", str(tmp_path / "results")]
    multi = subprocess.run([find_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "harness", *args],
                           capture_output=True, text=True, env=env, timeout=120)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.count("ckpe | synthetic") == 1
    assert multi.stderr.count(PER_RANK) == 1, multi.stderr[-3000:]
    sets, partials = stored_sets(tmp_path / "two")
    assert len(sets) == 2 and sets[0].name.startswith("ref-ground-truth-") and partials == []

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "one"))
    data = synthetic_data()
    single, name = from_recipe(parse_recipe(recipe), Target(data, get_card("synthetic"), RunConfig(dataset="synthetic"), False))
    assert sets[1].name == f"{name}.json"
    assert_same_points(load_keypoint_set(sets[1], data)[0].points, single.points)
    record = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert record["keypoints"]["provenance"]["keypoint_set"] == name
