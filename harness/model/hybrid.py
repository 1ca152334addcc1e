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

from dataclasses import dataclass
from functools import lru_cache

from torch import nn

from .frozen_trunk import TOKEN_CACHE_BYTES, FrozenTrunk

@lru_cache(maxsize=1)
def trunk_embed_class() -> type:
    """timm's HybridEmbed, reporting patch size and grid in input pixels (what the keypoint masks
    need) instead of in feature-map cells: ``patch_size`` = trunk stride x token patch (16 x 1).
    Made on first use, as timm is imported where a model is built: importing timm's ViT modules
    costs every command start-up time, and most never build a hybrid."""
    from timm.layers import HybridEmbed

    class TrunkEmbed(HybridEmbed):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.token_patch = self.patch_size  # in feature-map cells: the projection's kernel
            self.patch_size = tuple(r * p for r, p in zip(self.feature_ratio, self.token_patch))

        def feat_ratio(self, as_scalar: bool = True):
            return max(self.patch_size) if as_scalar else self.patch_size

        def set_input_size(self, *args, **kwargs):
            raise NotImplementedError("a hybrid backbone is built for one input size: build it again")

    return TrunkEmbed


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
                 cache_bytes: int = TOKEN_CACHE_BYTES) -> nn.Module:
    """trunk (input -> stride-``shape.stride`` map of ``shape.channels``) -> a timm VisionTransformer
    of ``shape``'s size on its tokens.

    ``image_size`` must be a multiple of the stride (checked by the caller): the feature map is then
    exactly image_size / stride cells wide, which the grid states without a trial forward.
    """
    from timm.models.vision_transformer import VisionTransformer  # timm where the model is built, as backbones.py

    frozen = FrozenTrunk(trunk, shape.channels, cache_bytes)
    grid = image_size // shape.stride
    trunk_embed = trunk_embed_class()

    def embed_layer(**kwargs):
        kwargs.pop("patch_size", None)  # the ViT's patch_size is the token patch on the feature map
        return trunk_embed(frozen, patch_size=1, feature_size=grid, feature_ratio=shape.stride, **kwargs)

    model = VisionTransformer(img_size=image_size, patch_size=1, embed_dim=shape.embed_dim, depth=shape.depth,
                              num_heads=shape.num_heads, num_classes=0, embed_layer=embed_layer)
    model.pretrained_cfg = {"input_size": (3, image_size, image_size), "mean": tuple(mean), "std": tuple(std),
                            "classifier": "head"}
    return model
