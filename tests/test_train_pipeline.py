import json

import pytest

from harness.engine.train import batch_starts, prefetched


def test_prefetched_keeps_order_and_raises_worker_errors():
    assert list(prefetched(lambda k: k * k, range(6), depth=2)) == [0, 1, 4, 9, 16, 25]
    assert list(prefetched(lambda k: k + 1, range(3), depth=0)) == [1, 2, 3]

    def boom(k):
        if k == 2:
            raise RuntimeError("bad batch 2")
        return k

    got = []
    with pytest.raises(RuntimeError, match="bad batch 2"):
        for item in prefetched(boom, range(5), depth=2):
            got.append(item)
    assert got == [0, 1]


def test_compiled_step_matches_eager(cli, tiny_args, tmp_path):
    for name, extra in (("eager", []), ("compiled", ["--compile", "aot_eager"])):
        res = cli("run", "--method", "ckpe", "--results-dir", tmp_path / name, *tiny_args, *extra)
        assert res.exit_code == 0, res.output
    eager = json.loads(next((tmp_path / "eager").glob("*.json")).read_text())
    comp = json.loads(next((tmp_path / "compiled").glob("*.json")).read_text())
    assert comp["config"]["compile"] == "aot_eager"
    assert len(eager["history"]) == len(comp["history"]) > 0
    for a, b in zip(eager["history"], comp["history"]):
        assert abs(a["loss"] - b["loss"]) < 1e-3 * max(1.0, abs(a["loss"]))


def test_unknown_compile_backend(cli, tiny_args, tmp_path):
    res = cli("run", "--results-dir", tmp_path, *tiny_args, "--compile", "nope")
    assert res.exit_code != 0 and "unknown --compile backend 'nope'; valid: none, " in res.output
    assert not list(tmp_path.glob("*.json"))


def test_batch_starts_drop_a_last_batch_some_ranks_would_see_empty():
    assert batch_starts(10, 4) == [0, 4, 8]  # one process: every image, the last batch of 2
    assert batch_starts(10, 4, world=2) == [0, 4, 8]  # 2 images for 2 ranks: kept
    assert batch_starts(9, 4, world=2) == [0, 4]  # 1 image for 2 ranks: rank 1 would get none
    assert batch_starts(8, 4, world=4) == [0, 4]


def test_checkpoint_restores_the_torch_rng_and_discard_removes_killed_writes(tmp_path):
    import torch

    from harness.engine.checkpoint import Checkpoint, TrainState

    def state():
        net = torch.nn.Linear(2, 2)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        return TrainState(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), torch.Generator(), [])

    ckpt = Checkpoint(tmp_path / "run_s0.pt")
    s = state()
    s.epoch = 1
    torch.manual_seed(123)
    ckpt.on_epoch_end(s)
    expected = torch.rand(3)  # what an uninterrupted run draws next
    torch.manual_seed(999)  # a fresh process
    resumed = state()
    ckpt.on_start(resumed)
    assert resumed.epoch == 1 and torch.equal(torch.rand(3), expected)
    (tmp_path / ".run_s0-k1ll3d.pt").write_bytes(b"half a checkpoint")  # a write cut by kill -9
    (tmp_path / ".other_s0-abc.pt").write_bytes(b"another run's")
    ckpt.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other_s0-abc.pt"]


def test_a_damaged_checkpoint_is_ignored_with_a_warning(tmp_path):
    import torch

    from harness.engine.checkpoint import Checkpoint, TrainState

    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    state = TrainState(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), torch.Generator(), [])
    (tmp_path / "run_s0.pt").write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="ignoring unreadable checkpoint"):
        Checkpoint(tmp_path / "run_s0.pt").on_start(state)
    assert state.epoch == 0 and state.history == []  # training starts afresh
