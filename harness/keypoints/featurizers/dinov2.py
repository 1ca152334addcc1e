"""DINOv2 patch tokens (timm): prefix tokens dropped, stride = the patch size (14)."""
from __future__ import annotations

from pathlib import Path

import torch

from ...core.distributed import pick_device
from ...core.errors import DataError
from ...model.backbones import skeleton
from .base import FEATURIZERS, Featurizer, check_size, timm_model_name

DEFAULT_DINOV2_MODEL = "vit_base_patch14_dinov2.lvd142m"


@FEATURIZERS.register("dinov2", "patch tokens of a DINOv2 ViT (timm), stride 14")
class DinoV2Featurizer(Featurizer):
    name = "dinov2"

    def __init__(self, model: str = DEFAULT_DINOV2_MODEL, size: int = 448, device: str = "auto", batch_size: int = 8):
        self.model, self.size, self.batch_size = str(model), int(size), int(batch_size)
        self.device = pick_device(device)
        self.stride = 14  # checked against the loaded model's patch size

    def config(self) -> dict:
        return {"featurizer": "dinov2", "model": self.model, "size": self.size}

    def download_gb(self) -> float:
        """The fp32 checkpoint's size, from the architecture built on the meta device."""
        if Path(self.model).expanduser().is_dir():
            return 0.0
        return 4 * sum(p.numel() for p in skeleton(self.model, self.size).parameters()) / 1e9

    def load(self) -> None:
        import timm

        try:
            net = timm.create_model(timm_model_name(self.model), pretrained=True, num_classes=0, img_size=self.size)
        except (OSError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot load DINOv2 model {self.model!r} (timm name, hf-hub:<repo> or local folder): {first}") from exc
        patch = net.patch_embed.patch_size
        self.stride = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        check_size(self.size, self.stride, "dinov2")
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        self.mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), device=self.device).view(1, 3, 1, 1)
        self.prefix = int(getattr(net, "num_prefix_tokens", 1))
        self.net = net.to(self.device).eval()

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(self.device) - self.mean) / self.std
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            tokens = self.net.forward_features(x)
        tokens = tokens[:, self.prefix :]
        grid = self.size // self.stride
        return tokens.float().reshape(tokens.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
