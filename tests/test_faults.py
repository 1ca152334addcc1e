"""Robustness: interruption, concurrency and atomic writes (more fault cases live beside the
features they guard: test_cli.py, test_splits_and_data.py, test_paper_runs.py)."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from harness.core.errors import ResultsError
from harness.engine.records import RunLock
from harness.engine.records import write_record


def harness_cmd(*args):
    return [sys.executable, "-m", "harness", *[str(a) for a in args]]


# `python -m harness ARGS` whose process SIGKILLs itself once epoch 2's checkpoint is on disk: the
# kill lands mid-training every time, however fast the run (a warm cache once let it finish first)
KILLED_AFTER_EPOCH_2 = """
import os, runpy, signal, sys
from harness.engine import checkpoint
saved = checkpoint.Checkpoint.on_epoch_end
def on_epoch_end(self, state):
    saved(self, state)
    if state.epoch >= 2 and self.path.exists():
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.Checkpoint.on_epoch_end = on_epoch_end
sys.argv = ["harness", *sys.argv[1:]]
runpy.run_module("harness", run_name="__main__")
"""


def test_kill_9_mid_training_then_rerun_resumes_with_identical_metrics(tmp_path, tiny_args):
    args = ["run", "--method", "ckpe", *tiny_args, "--epochs", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(harness_cmd(*args, "--results-dir", tmp_path / "ref"), capture_output=True, text=True,
                         env=env, timeout=300)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_EPOCH_2, *[str(a) for a in args], "--results-dir", out],
                            capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpts = out / ".checkpoints"
    assert torch.load(next(ckpts.glob("*.pt")), weights_only=True)["epoch"] == 2
    assert not list(out.glob("*.json")), "a killed run must not leave a result"
    again = subprocess.run(harness_cmd(*args, "--results-dir", out), capture_output=True, text=True, env=env,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and "after epoch 2" in again.stderr
    a = json.loads(next((tmp_path / "ref").glob("*.json")).read_text())
    b = json.loads(next(out.glob("*.json")).read_text())
    assert a["metrics"] == b["metrics"]
    assert a["history"] == b["history"]
    assert not list(ckpts.glob("*.pt")), "the checkpoint is removed once the result is written"
    assert not list((out / ".locks").glob("*.lock"))


def test_two_processes_writing_results_at_once(tmp_path, tiny_args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(harness_cmd("run", "--method", m, *tiny_args, "--results-dir", tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for m in ("vit", "ckpe")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2
    for f in files:
        json.loads(f.read_text())  # complete, parseable
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_no_overwrite_is_atomic_and_lock_refuses_a_live_twin(tmp_path):
    path = tmp_path / "r.json"
    write_record(path, {"a": 1})
    with pytest.raises(ResultsError, match="already exists"):
        write_record(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    write_record(path, {"a": 3}, overwrite=True)
    assert json.loads(path.read_text()) == {"a": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    with RunLock(tmp_path, "x"):
        with pytest.raises(ResultsError, match=r"another process \(pid \d+\) is running this config"):
            RunLock(tmp_path, "x").__enter__()
    # a lock left by a dead process is taken over
    stale = tmp_path / ".locks" / "y.lock"
    stale.write_text("999999")
    with RunLock(tmp_path, "y"):
        assert stale.read_text() == str(os.getpid())
    assert not stale.exists()


def test_ablate_over_a_run_another_sweep_holds_says_skipped_and_exits_cleanly(cli, tmp_path):
    from harness.tables import ablate

    res = tmp_path / "results"
    args = ("ablate", "1", "--tiny", "--seeds", "1", "--row", "WildLife Dataset, closed protocol", "--column",
            "MacaqueFaces", "--results-dir", res)  # one run: a single closed split
    (job,), _ = ablate.plan("1", res, setting="tiny", seeds=1,
                            select=ablate.Selection(None, ("MacaqueFaces",), ("WildLife Dataset, closed protocol",), ()))
    with RunLock(res, job.path.stem):  # this live process stands for the other sweep
        out = cli(*args)
    assert out.exit_code == 0, out.output
    (line,) = [x for x in out.output.splitlines() if x.startswith("skipped: ")]
    assert "another process (pid" in line and "failed" not in out.output
    assert not job.path.exists() and not (res / ablate.FAILED_FOLDER).exists()
    assert cli(*args).exit_code == 0 and job.path.exists()  # once the lock is gone, the run is this sweep's


def test_corrupt_image_in_a_dataset_fails_or_is_skipped_and_recorded(cli, tiny_args, tmp_path, monkeypatch):
    from harness.data.loaders import get_card, load_dataset

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    opts = dict(a.split("=", 1) for a in tiny_args[tiny_args.index("--dataset-option") + 1 :: 2] if "=" in a)
    data = load_dataset(get_card("synthetic"), opts)
    victim = data.root / data.df["path"].iloc[7]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated PNG
    res = cli("run", "--results-dir", tmp_path / "r", *tiny_args)
    assert res.exit_code != 0 and "cannot read image" in res.output and "--bad-images skip" in res.output
    assert "Traceback" not in res.output and not list((tmp_path / "r").glob("*.json"))
    res = cli("run", "--results-dir", tmp_path / "r", *tiny_args, "--bad-images", "skip")
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert rec["split"]["skipped_images"] == [str(data.df["image_id"].iloc[7])]
    assert rec["split"]["train_images"] + rec["split"]["test_images"] == len(data.df) - 1


def test_leaderboard_while_runs_finish_never_sees_or_writes_a_partial_file(cli, tmp_path, tiny_args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results, out = tmp_path / "results", tmp_path / "board" / "leaderboard.md"
    out.parent.mkdir()  # --output's folder must exist (a missing one is refused)
    procs = [subprocess.Popen(harness_cmd("run", "--method", m, *tiny_args, "--results-dir", results),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for m in ("vit", "kpe")]
    renders = 0
    while any(p.poll() is None for p in procs) or renders < 2:
        res = cli("leaderboard", "--results-dir", results, "--output", out)
        assert res.exit_code == 0, res.output
        text = out.read_text()
        assert text.startswith("# Leaderboard") and text.endswith("\n")
        renders += 1
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert renders >= 2
    assert sorted(f.name for f in out.parent.iterdir() if f.name.startswith(".")) == []  # no temporaries left


def test_half_written_temporary_files_are_never_read_as_records(tmp_path):
    """replace_atomic writes `.<name>-XXXX.json` beside the target; readers of results skip hidden
    files, so a write in progress (or one cut by kill -9) is never read as a record."""
    import shutil

    from harness.engine.records import load_records
    from harness.core.paths import REPO_ROOT

    record = sorted((REPO_ROOT / "results").glob("*.json"))[0]
    shutil.copy(record, tmp_path / record.name)
    shutil.copy(record, tmp_path / f".{record.stem}-x1y2z3.json")  # complete, but not yet renamed
    assert [name for name, _ in load_records(tmp_path)] == [record.name]
