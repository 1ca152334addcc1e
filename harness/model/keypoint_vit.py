"""KeypointViT: any timm ViT, wrapped (never subclassed), plus a keypoint positional embedding.

KPE:  E = m W,   m in {0,1}^N (patch holds any keypoint),  W in R^(1 x D)
CKPE: E = M W_c, M in {0,1}^(N x C) (patch holds a keypoint of category c), W_c in R^(C x D)
E is added to the patch tokens right after the patch embedding, i.e. before the backbone adds its
positional embedding and prepends [CLS]; [CLS] is untouched. The addition is done by a forward
hook on the backbone's ``patch_embed``, so the backbone's own forward (and its pretrained
weights, loaded strictly) is used unchanged. With W = 0 the output equals the plain backbone's.

How W starts is an option the paper leaves open (``INITS``), and it decides whether the channel is
used at all: from zero, under SGD at lr 1e-3, W grew to 0.2% of the mean patch-token norm in 200
steps on a probe that needs the keypoint, and the model learned what the pixels alone could tell.
So the wrapper measures, while training, the mean norm of the patch tokens W is added to, and
``channel_share`` reports ||W_c|| (mean over rows) relative to it: a record's history shows
whether the channel ever carried weight.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..core.errors import BackboneError

ENCODINGS = ("none", "binary", "categorical")
# zero: the model starts as the plain ViT; normal: std 0.02 as timm initialises position embeddings;
# token: random directions scaled to the mean patch-token norm of a sample batch (``match_token_scale``)
INITS = ("zero", "normal", "token")
NORMAL_STD = 0.02


def backbone_geometry(backbone: nn.Module) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid_h, grid_w), (patch_h, patch_w) from the backbone's own patch embedding."""
    pe = getattr(backbone, "patch_embed", None)
    if pe is None or not hasattr(pe, "patch_size") or not hasattr(pe, "grid_size"):
        raise ValueError(f"{type(backbone).__name__} has no ViT-style patch_embed with patch_size and grid_size")
    ps = pe.patch_size if isinstance(pe.patch_size, (tuple, list)) else (pe.patch_size, pe.patch_size)
    gs = pe.grid_size if isinstance(pe.grid_size, (tuple, list)) else (pe.grid_size, pe.grid_size)
    return (int(gs[0]), int(gs[1])), (int(ps[0]), int(ps[1]))


class KeypointEncoding(nn.Module):
    """Projects a (B, N, C) keypoint mask to (B, N, D) token offsets; starts as ``init`` (``INITS``;
    token starts as normal and is rescaled once the tokens are seen)."""

    def __init__(self, num_categories: int, dim: int, categorical: bool, init: str = "zero"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown keypoint embedding init {init!r}; valid: {', '.join(INITS)}")
        self.categorical = categorical
        self.init = init
        rows = num_categories if categorical else 1
        start = torch.zeros(rows, dim) if init == "zero" else torch.randn(rows, dim) * NORMAL_STD
        self.weight = nn.Parameter(start)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        if not self.categorical:
            mask = mask.amax(dim=-1, keepdim=True)
        return mask.to(self.weight.dtype) @ self.weight


class KeypointViT(nn.Module):
    def __init__(self, backbone: nn.Module, encoding: str = "none", num_categories: int = 0, init: str = "zero"):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown keypoint encoding {encoding!r}; valid: {', '.join(ENCODINGS)}")
        if encoding != "none" and num_categories < 1:
            raise ValueError(f"{encoding} keypoint encoding needs at least one keypoint category")
        self.backbone = backbone
        if encoding == "none" and not hasattr(getattr(backbone, "patch_embed", None), "grid_size"):
            self.grid, self.patch = (0, 0), (0, 0)  # no keypoints: any timm backbone (Swin, CNN, ...)
        else:
            self.grid, self.patch = backbone_geometry(backbone)
        self.num_categories = num_categories
        self.embed_dim = int(getattr(backbone, "num_features", None) or backbone.embed_dim)
        self.encoding = (
            KeypointEncoding(num_categories, int(backbone.embed_dim), encoding == "categorical", init)
            if encoding != "none"
            else None
        )
        self._mask: torch.Tensor | None = None
        # sum and count of the mean patch-token norm per training forward (on the device: no sync per step)
        self._token_norms: list[torch.Tensor] = []
        if self.encoding is not None:
            backbone.patch_embed.register_forward_hook(self._add_encoding)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def _add_encoding(self, module, inputs, tokens):
        if self._mask is None:  # registered only with an encoding; no mask given for this call
            return tokens
        if self.training:
            self._token_norms.append(tokens.detach().float().norm(dim=-1).mean())
        offset = self.encoding(self._mask).to(tokens.dtype)
        if tokens.dim() == 4:  # NHWC output (dynamic image size)
            offset = offset.view(tokens.shape)
        return tokens + offset

    @contextmanager
    def _with_mask(self, mask):
        self._mask = mask
        try:
            yield
        finally:
            self._mask = None

    def channel_share(self) -> dict:
        """The keypoint embedding's scale since the last call: its rows' mean norm, the mean norm of
        the patch tokens it was added to in training, and their ratio; {} without an encoding or
        before any training forward. Resets the token statistics."""
        if self.encoding is None or not self._token_norms:
            return {}
        tokens = float(torch.stack(self._token_norms).mean())
        self._token_norms = []
        norm = float(self.encoding.weight.detach().float().norm(dim=1).mean())
        return {"kpe_norm": round(norm, 6), "token_norm": round(tokens, 6),
                "kpe_share": round(norm / tokens, 6) if tokens > 0 else None}

    @torch.no_grad()
    def restore_channel(self, weight: torch.Tensor | None, source) -> None:
        """Take the keypoint embedding of a kept network (``kept_channel``: ``encoding.weight`` of a
        file written by --save-weights); it is then not rescaled at the start of training. None (a
        backbone checkpoint) leaves the embedding at its init; a model without one ignores it."""
        if self.encoding is None or weight is None:
            return
        if tuple(weight.shape) != tuple(self.encoding.weight.shape):
            raise BackboneError(f"--weights {source}: its keypoint embedding is {tuple(weight.shape)}, this run's "
                                f"{tuple(self.encoding.weight.shape)} (another method or number of keypoints)")
        self.encoding.weight.copy_(weight)
        self.encoding.init = "restored"  # match_token_scale leaves it as kept

    @torch.no_grad()
    def match_token_scale(self, images: torch.Tensor) -> None:
        """``token`` init: rescale every row of W to the mean norm of the patch tokens of
        ``images`` (normalized model inputs), so the channel starts at the scale of what it is
        added to. Other inits are left alone."""
        if self.encoding is None or self.encoding.init != "token":
            return
        tokens = self.backbone.patch_embed(images).float()
        scale = tokens.norm(dim=-1).mean()
        weight = self.encoding.weight
        weight.mul_(scale / weight.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, 3, H, W) -> [CLS] (pooled pre-logits) embedding (B, D)."""
        if self.encoding is not None:
            if mask is None:
                raise ValueError("this model encodes keypoints: pass a (B, N, C) token mask")
            if mask.shape[1:] != (self.num_patches, self.num_categories):
                raise ValueError(
                    f"token mask shape {tuple(mask.shape)} does not match "
                    f"(B, {self.num_patches}, {self.num_categories})"
                )
        with self._with_mask(mask):
            feats = self.backbone.forward_features(images)
        return self.backbone.forward_head(feats, pre_logits=True)
