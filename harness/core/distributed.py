"""Multi-process training under torchrun: rank/world from the environment, gloo on CPU, nccl on CUDA.

`torchrun --nproc_per_node N -m harness.cli run ...` trains with DDP (each rank a slice of every
global batch); rank 0 alone evaluates and writes the result record.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from .errors import DeviceError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def gpu_hint() -> str | None:
    """What suggests this machine has an NVIDIA GPU (None: nothing does, e.g. a laptop)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return f"CUDA_VISIBLE_DEVICES={visible!r} is set"
    if shutil.which("nvidia-smi"):
        return "nvidia-smi is installed"
    if os.path.exists("/proc/driver/nvidia/version"):
        return "an NVIDIA driver is loaded"
    return None


def cuda_unusable_reason() -> str | None:
    """Why torch cannot use a GPU that this machine seems to have; None when CUDA works or when
    nothing suggests a GPU (then the CPU is what the user expects, and nothing is said)."""
    if torch.cuda.is_available():
        return None
    hint = gpu_hint()
    if hint is None:
        return None
    if torch.version.cuda is None:
        return (f"{hint}, but torch {torch.__version__} is a CPU-only build: install a CUDA build of torch "
                "(https://pytorch.org/get-started/locally/)")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"{hint}, which hides every GPU from torch"
    try:
        torch.cuda.init()  # is_available() only says False; init() says why
        why = "torch sees no CUDA device"
    except Exception as exc:  # noqa: BLE001 - any failure here is the reason to report
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (f"{hint}, but torch {torch.__version__} (built for CUDA {torch.version.cuda}) cannot use a GPU: {why} "
            "(a driver older than that CUDA needs one newer, or a torch built for an older CUDA)")


_warned: set = set()  # one warning per process, not one per run of `--dataset all`


def pick_device(name: str) -> torch.device:
    """``auto`` = CUDA when there is a GPU, else CPU (with a one-line warning on stderr when the
    machine seems to have a GPU torch cannot use); anything else as torch spells it, checked:
    an unknown device or one this machine lacks is a one-line error, not a traceback later."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        reason = cuda_unusable_reason()
        if reason and reason not in _warned:
            _warned.add(reason)
            print(f"warning: --device auto runs on the CPU: {reason}", file=sys.stderr)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown --device {name!r}; valid: auto, cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = cuda_unusable_reason()
            raise DeviceError(f"--device {name}: no CUDA GPU is visible to torch here; use --device cpu (or auto)"
                              + (f" ({why})" if why else ""))
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {name}: Apple's MPS is not available here; use --device cpu (or auto)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {name}: the harness runs on cpu, cuda or mps, not {device.type}")
    return device


def from_env() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(info: DistInfo, device: torch.device) -> torch.device:
    """Initialise the process group (once) and return this rank's device."""
    if info.world <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        torch_dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.world > 1 and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
