"""Backbones: which architecture (a timm name, or a short alias) apart from which weights."""
from __future__ import annotations

from torch import nn

# alias -> (timm architecture[.pretrained tag], architecture overrides)
ALIASES: dict[str, tuple[str, dict]] = {
    # random-init test bed: 4 blocks, 96-d, patch 8; runs in seconds on a CPU
    "micro": ("vit_tiny_patch16_224", dict(patch_size=8, embed_dim=96, depth=4, num_heads=4)),
    "nano": ("vit_tiny_patch16_224", dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)),
    # the paper's ViT sizes, ImageNet-21k pretraining
    "base": ("vit_base_patch16_224.augreg_in21k", {}),
    "large": ("vit_large_patch16_224.augreg_in21k", {}),
    "huge": ("vit_huge_patch14_224.orig_in21k", {}),
}


class BackboneError(ValueError):
    pass


def create_backbone(name: str, image_size: int, pretrained: bool = False) -> nn.Module:
    import timm

    arch, overrides = ALIASES.get(name, (name, {}))
    base = arch.split(".")[0]
    if not timm.models.is_model(base):
        raise BackboneError(
            f"unknown backbone {name!r}: not an alias ({', '.join(ALIASES)}) nor a timm model name"
        )
    patch = overrides.get("patch_size")
    try:
        model = timm.create_model(arch, pretrained=pretrained, num_classes=0, img_size=image_size, **overrides)
    except TypeError as exc:
        raise BackboneError(f"backbone {name!r} cannot be built at image size {image_size}: {exc}") from exc
    pe = getattr(model, "patch_embed", None)
    if pe is None:
        raise BackboneError(f"backbone {name!r} is not a ViT (no patch_embed); keypoint methods need one")
    ps = pe.patch_size if isinstance(pe.patch_size, (tuple, list)) else (pe.patch_size,) * 2
    if image_size % ps[0] or image_size % ps[1] or (patch and image_size % patch):
        raise BackboneError(f"image size {image_size} is not divisible by the patch size {ps[0]} of {name!r}")
    return model
