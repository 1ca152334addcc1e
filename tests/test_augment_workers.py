"""RandAugment in threads: the same images and keypoints as one thread; the worker count's default
and its override."""
from __future__ import annotations

import pytest
import torch

from harness.engine.augment import RandAugment
from harness.engine.workers import WORKERS_ENV, default_workers, image_seed


def test_threads_augment_exactly_as_one_thread():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 24, 24), dtype=torch.uint8, generator=g)
    points = torch.rand(12, 3, 2, generator=g) * 24
    seeds = [image_seed(1, 2, i) for i in range(12)]
    one = RandAugment(2, 20).seeded(images, points, seeds, workers=1)
    four = RandAugment(2, 20).seeded(images, points, seeds, workers=4)
    assert torch.equal(one[0], four[0]) and torch.allclose(one[1], four[1], equal_nan=True)
    no_points = RandAugment(2, 20).seeded(images, None, seeds, workers=3)
    assert no_points[1] is None and torch.equal(no_points[0], one[0])


def test_default_workers_and_override(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_workers("cpu") == 1 and default_workers("cuda") == 8
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert default_workers("cuda") == 3
    monkeypatch.setenv(WORKERS_ENV, "5")
    assert default_workers("cpu") == 5
    monkeypatch.setenv(WORKERS_ENV, "many")
    with pytest.raises(ValueError, match=WORKERS_ENV):
        default_workers("cuda")
