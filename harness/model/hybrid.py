"""Hybrid backbone: a pretrained CNN trunk's stride-16 feature map as the patch tokens of a small ViT.

The trunk (e.g. MobileNetV2 up to its stride-16 stage) is FROZEN: always in eval mode (its
BatchNorm keeps the pretrained statistics), no gradients, and its outputs are cached by image
content, so after the first epoch a training step costs only the small transformer (a frozen trunk
with cached tokens; the trunk is never fine-tuned). Tokens of the dataset's decoded images can also
come from disk, computed once per token set for a whole sweep (``token_cache.py``). Its feature map goes through timm's
``HybridEmbed`` (a 1 x 1 projection to the transformer's width, trained) and then timm's own
``VisionTransformer`` ([CLS], positional embedding, blocks), built from its ordinary arguments.

For the keypoint wrapper (``keypoint_vit.py``), the patch embedding reports what a token covers in
the INPUT image: ``patch_size`` = the trunk's stride (16), ``grid_size`` = input size / 16, so a
keypoint at pixel (x, y) marks token (y // 16, x // 16), the feature-map cell computed over it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from timm.layers import HybridEmbed
from timm.models.vision_transformer import VisionTransformer
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


class TrunkEmbed(HybridEmbed):
    """timm's HybridEmbed, reporting patch size and grid in input pixels (what the keypoint masks
    need) instead of in feature-map cells: ``patch_size`` = trunk stride x token patch (16 x 1)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_patch = self.patch_size  # in feature-map cells: the projection's kernel
        self.patch_size = tuple(r * p for r, p in zip(self.feature_ratio, self.token_patch))

    def feat_ratio(self, as_scalar: bool = True):
        return max(self.patch_size) if as_scalar else self.patch_size

    def set_input_size(self, *args, **kwargs):
        raise NotImplementedError("a hybrid backbone is built for one input size: build it again")


@dataclass(frozen=True)
class HybridShape:
    """The trunk's feature map (``channels`` wide, at ``stride`` input pixels per cell) and the size
    of the transformer on its tokens."""

    channels: int
    stride: int
    embed_dim: int
    depth: int
    num_heads: int


def build_hybrid(trunk: nn.Module, shape: HybridShape, image_size: int, mean, std,
                 cache_bytes: int = TOKEN_CACHE_BYTES) -> VisionTransformer:
    """trunk (input -> stride-``shape.stride`` map of ``shape.channels``) -> a timm VisionTransformer
    of ``shape``'s size on its tokens.

    ``image_size`` must be a multiple of the stride (checked by the caller): the feature map is then
    exactly image_size / stride cells wide, which the grid states without a trial forward.
    """
    frozen = FrozenTrunk(trunk, shape.channels, cache_bytes)
    grid = image_size // shape.stride

    def embed_layer(**kwargs):
        kwargs.pop("patch_size", None)  # the ViT's patch_size is the token patch on the feature map
        return TrunkEmbed(frozen, patch_size=1, feature_size=grid, feature_ratio=shape.stride, **kwargs)

    model = VisionTransformer(img_size=image_size, patch_size=1, embed_dim=shape.embed_dim, depth=shape.depth,
                              num_heads=shape.num_heads, num_classes=0, embed_layer=embed_layer)
    model.pretrained_cfg = {"input_size": (3, image_size, image_size), "mean": tuple(mean), "std": tuple(std),
                            "classifier": "head"}
    return model
