"""`--device auto` on a machine whose GPU torch cannot use: one warning line with the reason."""
from __future__ import annotations

import pytest
import torch

from harness.core import distributed
from harness.core.errors import DeviceError


@pytest.fixture
def no_cuda(monkeypatch):
    """torch sees no GPU; nothing hints at one unless a test sets it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(distributed.shutil, "which", lambda name: None)
    monkeypatch.setattr(distributed.os.path, "exists", lambda path: False)
    monkeypatch.setattr(distributed, "_warned", set())
    return monkeypatch


def test_laptop_without_gpu_is_silent(no_cuda, capsys):
    assert distributed.pick_device("auto") == torch.device("cpu")
    assert capsys.readouterr().err == ""


def test_cpu_only_build_with_driver_warns_once(no_cuda, capsys):
    no_cuda.setattr(distributed.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    no_cuda.setattr(torch.version, "cuda", None)
    assert distributed.pick_device("auto").type == "cpu"
    assert distributed.pick_device("auto").type == "cpu"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "runs on the CPU" in err[0] and "nvidia-smi is installed" in err[0] and "CPU-only build" in err[0]


def test_driver_too_old_names_the_driver_message(no_cuda, capsys):
    no_cuda.setattr(distributed.os.path, "exists", lambda path: path == "/proc/driver/nvidia/version")
    no_cuda.setattr(torch.version, "cuda", "13.0")

    def old_driver():
        raise RuntimeError("The NVIDIA driver on your system is too old (found version 12020).\nmore detail")

    no_cuda.setattr(torch.cuda, "init", old_driver)
    assert distributed.pick_device("auto").type == "cpu"
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "an NVIDIA driver is loaded" in err and "too old (found version 12020)" in err and "CUDA 13.0" in err


def test_hidden_devices_and_explicit_cuda(no_cuda, capsys):
    no_cuda.setenv("CUDA_VISIBLE_DEVICES", "")
    no_cuda.setattr(torch.version, "cuda", "13.0")
    assert distributed.pick_device("auto").type == "cpu"
    assert "hides every GPU" in capsys.readouterr().err
    with pytest.raises(DeviceError, match="hides every GPU"):
        distributed.pick_device("cuda")
