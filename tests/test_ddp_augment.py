"""RandAugment under torchrun: every image's operations come from (seed, epoch, place in the
order), so ranks that slice a batch unevenly augment exactly what one process would, keep one
epoch order, and weigh their slices so DDP's average is the global batch's mean."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from harness.core.distributed import DistInfo
from harness.engine.augment import RandAugment
from harness.engine.workers import image_seed
from harness.engine.settings import TrainSettings
from harness.engine.train import Normalizer, TrainData, batch_maker

from test_distributed import find_torchrun


def maker(world, rank, n=61, batch=61, accumulate=1):
    g = torch.Generator().manual_seed(0)
    data = TrainData(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(n) % 7,
                     torch.rand(n, 3, 2, generator=g) * 16)
    settings = TrainSettings(epochs=2, batch_size=batch, lr=1e-3, weight_decay=0.0, warmup_epochs=0.0, hflip=0.0,
                             seed=5, accumulate=accumulate, augment=RandAugment(2, 20))
    return batch_maker(None, data, Normalizer((0.0,) * 3, (1.0,) * 3), settings, torch.device("cpu"),
                       DistInfo(rank, world))


def test_uneven_rank_slices_augment_exactly_as_one_process():
    order = torch.randperm(61, generator=torch.Generator().manual_seed(1))
    flips = torch.zeros(61, dtype=torch.bool)
    idx1, x1, _, _, share1 = maker(1, 0)((0, 0), order, flips, epoch=1)
    parts = [maker(2, r)((0, 0), order, flips, epoch=1) for r in (0, 1)]
    assert [len(p[0]) for p in parts] == [31, 30]
    merged = torch.empty_like(x1)
    merged[0::2], merged[1::2] = parts[0][1], parts[1][1]  # rank r holds places r, r + 2, ...
    assert torch.equal(merged, x1)  # the same operations on the same images
    assert share1 == 1.0 and abs(sum(p[4] for p in parts) / 2 - 1.0) < 1e-12  # DDP's average: the global mean
    assert abs(parts[0][4] - 2 * 31 / 61) < 1e-12
    again = maker(1, 0, accumulate=1)((0, 0), order, flips, epoch=2)[1]
    assert not torch.equal(again, x1)  # another epoch, other operations
    ops = RandAugment(2, 20)
    first = [ops.draw(torch.Generator().manual_seed(image_seed(5, 1, p))) for p in range(8)]
    assert len({str(o) for o in first}) > 1  # images of one batch do not share their operations


def test_micro_batches_augment_as_the_whole_batch():
    order = torch.arange(24)
    flips = torch.zeros(24, dtype=torch.bool)
    whole = maker(1, 0, n=24, batch=24)((0, 0), order, flips, epoch=0)[1]
    split = torch.cat([maker(1, 0, n=24, batch=24, accumulate=3)((0, p), order, flips, epoch=0)[1] for p in range(3)])
    assert torch.equal(whole, split)


def test_torchrun_randaugment_with_an_uneven_last_batch_matches_one_process(tmp_path, tiny_args):
    """48 training images in batches of 11: every batch splits 6 / 5 over the 2 gloo ranks."""
    torchrun = find_torchrun()
    args = ["run", "--method", "ckpe", *tiny_args, "--epochs", "3", "--batch-size", "11", "--augment", "randaugment"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "harness", *args, "--results-dir", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "harness", *args,
                            "--results-dir", str(tmp_path / "two")], capture_output=True, text=True, env=env,
                           timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    one = json.loads(next((tmp_path / "one").glob("*.json")).read_text())
    two = json.loads(next((tmp_path / "two").glob("*.json")).read_text())
    assert one["split"]["train_images"] == 48 and two["timing"]["processes"] == 2
    for a, b in zip(one["history"], two["history"], strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, abs(a["loss"]))
