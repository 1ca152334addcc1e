"""The frozen-trunk token cache on disk (harness/model/token_cache.py): a token set is computed once and
then read by every run and seed; killed writes are never read; the key follows everything the tokens
depend on; the size budget evicts or refuses."""
import json
import os

import pytest
import torch

from harness.core.errors import DataError
from harness.model import token_cache
from harness.model.frozen_trunk import FrozenTrunk
from harness.model.token_cache import TokenStore, fill, set_key

ABOUT = {"dataset": "synthetic", "dataset_options": {"identities": "6"}, "fingerprint": "abc", "image_size": 32,
         "mean": [0.5] * 3, "std": [0.25] * 3}
TINY_DATA = ["--dataset-option", "identities=6", "--dataset-option", "images_per_identity=4",
             "--dataset-option", "image_size=32", "--quiet"]


def normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - 0.5) / 0.25


def conv_trunk(seed: int = 0) -> FrozenTrunk:
    torch.manual_seed(seed)
    return FrozenTrunk(torch.nn.Conv2d(3, 6, kernel_size=8, stride=8), 6)


@pytest.fixture
def images():
    return torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "SHARD_IMAGES", 4)  # 10 images: shards of 4, 4 and 2
    return TokenStore(tmp_path / "trunk-tokens", set_key(conv_trunk().trunk, ABOUT), 1 << 30, ABOUT)


def test_a_second_fill_runs_the_trunk_on_nothing_and_gives_the_same_tokens(images, store):
    first = conv_trunk()
    done = fill(first, images, normalize, store, progress=False)
    assert (done.computed, done.loaded, first.forwards) == (10, 0, 10)
    assert sorted(p.name for p in store.folder.iterdir()) == ["set.json", "shard-00000.pt", "shard-00001.pt",
                                                                "shard-00002.pt"]
    again = conv_trunk()  # another run (any seed): a fresh trunk object with the same weights
    done = fill(again, images, normalize, store, progress=False)
    assert (done.computed, done.loaded, again.forwards) == (0, 10, 0)
    x = normalize(images)
    tokens = again(x)  # what training and evaluation ask for: all answered from the set
    assert again.forwards == 0
    assert torch.equal(tokens, first.trunk(x).half().float())  # the fp16 tokens a miss would give
    assert json.loads((store.folder / "set.json").read_text())["images"] == 10


def test_a_killed_fill_resumes_and_never_reads_a_partial_shard(images, store, monkeypatch, capsys):
    trunk = conv_trunk()
    real = trunk.featurize
    calls = []

    def dies_on_the_second_shard(x):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed mid-fill, after shard 0 was written
        return real(x)

    monkeypatch.setattr(trunk, "featurize", dies_on_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        fill(trunk, images, normalize, store, progress=False)
    assert sorted(p.name for p in store.folder.glob("shard-*")) == ["shard-00000.pt"]
    # a write killed half-way leaves replace_atomic's hidden temporary file: never read as a shard
    (store.folder / ".shard-00001-x1y2.pt").write_bytes(b"half a shard")
    resumed = conv_trunk()
    done = fill(resumed, images, normalize, store, progress=False)
    assert (done.loaded, done.computed, resumed.forwards) == (4, 6, 6)
    # a damaged finished shard (disk trouble) is recomputed with a warning, never used
    (store.folder / "shard-00002.pt").write_bytes(b"not a torch file")
    fresh = conv_trunk()
    done = fill(fresh, images, normalize, store, progress=False)
    assert (done.loaded, done.computed, fresh.forwards) == (8, 2, 2)
    assert "shard-00002.pt is unreadable" in capsys.readouterr().err
    assert torch.equal(fresh(normalize(images)), conv_trunk().featurize(normalize(images)).float())


def test_the_key_follows_image_size_options_weights_and_normalization():
    trunk = conv_trunk().trunk
    base = set_key(trunk, ABOUT)
    assert set_key(conv_trunk().trunk, dict(ABOUT)) == base  # same weights, same set
    changed = [{**ABOUT, "image_size": 64}, {**ABOUT, "dataset_options": {"identities": "7"}},
               {**ABOUT, "fingerprint": "abd"}, {**ABOUT, "mean": [0.4] * 3}, {**ABOUT, "dataset": "macaquefaces"}]
    keys = {set_key(trunk, about) for about in changed}
    other = conv_trunk(seed=1).trunk  # other weights
    nudged = conv_trunk().trunk
    with torch.no_grad():
        nudged.bias[0] += 1e-6
    strided = torch.nn.Conv2d(3, 6, kernel_size=8, stride=4)  # the same tensors, computing otherwise
    strided.load_state_dict(trunk.state_dict())
    keys |= {set_key(other, ABOUT), set_key(nudged, ABOUT), set_key(strided, ABOUT)}
    assert base not in keys and len(keys) == len(changed) + 3


def test_the_budget_evicts_the_least_recently_used_set_and_refuses_one_too_big(images, tmp_path, monkeypatch,
                                                                              capsys):
    monkeypatch.setattr(token_cache, "SHARD_IMAGES", 4)
    root = tmp_path / "trunk-tokens"
    stores = [TokenStore(root, set_key(conv_trunk().trunk, {**ABOUT, "fingerprint": str(i)}), 1 << 30, ABOUT)
              for i in range(3)]
    for i, store in enumerate(stores[:2]):
        fill(conv_trunk(), images, normalize, store, progress=False)
        os.utime(store.folder / "set.json", (1000.0 + i, 1000.0 + i))  # set 0 used longest ago
    one_set = sum(p.stat().st_size for p in stores[0].folder.iterdir())
    stores[2].budget = int(2.2 * one_set)  # room for two sets: the third evicts the least recently used
    fill(conv_trunk(), images, normalize, stores[2], progress=False)
    assert not stores[0].folder.exists() and stores[1].folder.is_dir() and stores[2].folder.is_dir()
    assert "evicted" in capsys.readouterr().err
    small = TokenStore(root, set_key(conv_trunk(seed=5).trunk, ABOUT), 1024, ABOUT)  # too small for one set
    trunk = conv_trunk(seed=5)
    done = fill(trunk, images, normalize, small, progress=False)
    assert not done.stored and not small.folder.exists() and stores[1].folder.is_dir()  # refused, nothing evicted
    assert "more than the whole budget" in capsys.readouterr().err
    trunk(normalize(images))  # the run goes on, computing what the set would have held
    assert trunk.forwards == 4 + 6  # the first shard's tokens were kept in memory
    off = TokenStore(root, "off", 0, ABOUT)
    assert not fill(conv_trunk(), images, normalize, off, progress=False).stored and not off.folder.exists()


def test_a_bad_budget_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(token_cache.BUDGET_ENV, "lots")
    with pytest.raises(DataError, match=r"HARNESS_TOKEN_CACHE_GB='lots': give the token cache's size budget in GB"):
        token_cache.budget_bytes()
    monkeypatch.setenv(token_cache.BUDGET_ENV, "0.5")
    assert token_cache.budget_bytes() == 2**29


def test_runs_and_seeds_share_one_trunk_forward_per_image(cli, tmp_path, monkeypatch):
    """Through `harness run`: the first hybrid run computes the set, a second seed and a recomputed
    first seed run the trunk on nothing, and the cache changes no number."""
    import torchvision

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), tmp_path / "tv.pt")
    out = tmp_path / "r"

    def run(seed: int, *extra) -> dict:
        res = cli("run", "--method", "ckpe", "--dataset", "synthetic", "--backbone", "mobilenetv2-dsr-hybrid",
                  "--weights", tmp_path / "tv.pt", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                  "--seed", seed, "--results-dir", out, "--allow-small-test", *extra, *TINY_DATA)
        assert res.exit_code == 0, res.output
        return next(json.loads(p.read_text()) for p in out.glob("*.json") if json.loads(p.read_text())["seed"] == seed)

    first = run(0)["backbone"]["token_cache"]
    assert (first["computed"], first["loaded"], first["trunk_forwards"], first["images"]) == (24, 0, 24, 24)
    second = run(1)["backbone"]["token_cache"]
    assert (second["computed"], second["loaded"], second["trunk_forwards"]) == (0, 24, 0)
    assert second["set"] == first["set"]
    cached = run(0, "--force")
    assert cached["backbone"]["token_cache"]["trunk_forwards"] == 0
    monkeypatch.setenv(token_cache.BUDGET_ENV, "0")  # the disk cache off: the run's own trunk forwards
    uncached = run(0, "--force")
    assert not uncached["backbone"]["token_cache"]["stored"]
    assert uncached["backbone"]["token_cache"]["trunk_forwards"] >= 24
    assert uncached["metrics"] == cached["metrics"]
