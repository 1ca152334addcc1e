"""The frozen trunk of a hybrid backbone: a pretrained CNN's stride-16 feature map, never trained,
its outputs cached by image content (``hybrid.py`` puts it under a small ViT).

It needs torch only, not timm: the training engine finds a hybrid's trunk (``frozen_trunk``) without
importing timm's ViT modules, which cost start-up time to every command that never builds one.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

# outputs kept per trunk (fp16): MacaqueFaces' 6,280 images at 224 px take 236 MB
TOKEN_CACHE_BYTES = 1 << 30


class FrozenTrunk(nn.Module):
    """A CNN trunk that never trains; its outputs, rounded to fp16, are cached by input content.

    Every output is rounded to fp16, cached or not, so a cache hit and a miss give the same tokens
    and a run's numbers do not depend on what the cache held. Only CPU inputs are cached: on a GPU
    the trunk costs less than hashing its input on the host. Two caches: ``shared`` tokens (a token
    set read from disk or computed for it, ``token_cache.fill``) and what this run computed besides
    (flipped or augmented images, or every image without a token set), up to ``cache_bytes``.
    ``forwards`` counts the images the trunk has run on.
    """

    def __init__(self, trunk: nn.Module, channels: int, cache_bytes: int = TOKEN_CACHE_BYTES):
        super().__init__()
        self.trunk = trunk.eval().requires_grad_(False)
        self.num_features = channels  # HybridEmbed reads the map's width from here
        self.cache_bytes = cache_bytes
        self._cache: dict[bytes, torch.Tensor] = {}
        self._held = 0
        self.shared: dict[bytes, torch.Tensor] = {}
        self.forwards = 0

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()  # the pretrained BatchNorm statistics must never move
        return self

    @staticmethod
    def key(image: torch.Tensor) -> bytes:
        """The content key of one model-input image (3, S, S), as the caches and token sets use it."""
        return hashlib.blake2b(image.detach().float().contiguous().numpy().tobytes(), digest_size=16).digest()

    def featurize(self, images: torch.Tensor) -> torch.Tensor:
        """The trunk's fp16 tokens of a batch, counted in ``forwards``, cached nowhere."""
        with torch.no_grad():
            self.forwards += len(images)
            return self.trunk(images).half()

    def _cached(self, key: bytes) -> torch.Tensor | None:
        found = self.shared.get(key)
        return found if found is not None else self._cache.get(key)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.device.type != "cpu" or (self.cache_bytes <= 0 and not self.shared):
            return self.featurize(images).to(images.dtype)
        keys = [self.key(image) for image in images]
        found = [self._cached(key) for key in keys]
        todo = [i for i, hit in enumerate(found) if hit is None]
        fresh = self.featurize(images[todo]) if todo else None
        for j, i in enumerate(todo):
            found[i] = fresh[j]
            if self._held + fresh[j].nbytes <= self.cache_bytes:
                self._cache[keys[i]] = fresh[j].clone()
                self._held += fresh[j].nbytes
        return torch.stack(found).to(images.dtype)


def frozen_trunk(backbone: nn.Module) -> FrozenTrunk | None:
    """The frozen trunk of a hybrid backbone (None for any other backbone)."""
    found = getattr(getattr(backbone, "patch_embed", None), "backbone", None)
    return found if isinstance(found, FrozenTrunk) else None
