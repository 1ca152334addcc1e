"""Grad-CAM references (pytorch-grad-cam): the K strongest local maxima of a classifier's map."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...core.distributed import pick_device
from ...core.errors import DataError
from ...data.cards import Card
from ...data.dataset import ReidData, open_row
from ..featurizers.base import timm_model_name
from ..sets import Reference
from ..testbed import local_model
from .base import REFERENCE_SOURCES, AnnotateOptions, ReferenceSource, reference_row

DEFAULT_GRADCAM_MODELS = {"resnet": "resnet50.a1_in1k", "vit": "vit_base_patch16_224.augreg2_in21k_ft_in1k"}


def cam_peaks(cam: np.ndarray, k: int, min_distance: int) -> np.ndarray:
    """Top-k local maxima of a (H, W) map, at least ``min_distance`` pixels apart: (k, 2) (x, y) pixel centres."""
    t = torch.as_tensor(cam, dtype=torch.float32)[None, None]
    win = 2 * min_distance + 1
    is_max = t == F.max_pool2d(t, win, stride=1, padding=min_distance)
    vals = torch.where(is_max, t, torch.full_like(t, -np.inf)).flatten()
    order = vals.argsort(descending=True)
    h, w = cam.shape
    picked: list[tuple[float, float]] = []
    for i in order.tolist():
        if not np.isfinite(float(vals[i])) or len(picked) == k:
            break
        x, y = i % w + 0.5, i // w + 0.5
        if all((x - a) ** 2 + (y - b) ** 2 >= min_distance**2 for a, b in picked):
            picked.append((x, y))
    for i in order.tolist():  # a flat map has fewer maxima than k: fill with the next strongest pixels
        if len(picked) == k:
            break
        x, y = i % w + 0.5, i // w + 0.5
        if (x, y) not in picked:
            picked.append((x, y))
    return np.asarray(picked, dtype=np.float64)


def gradcam_reference(data: ReidData, card: Card | None, opts: AnnotateOptions, kind: str) -> Reference:
    import timm
    from pytorch_grad_cam import GradCAM

    model_name = opts.model or DEFAULT_GRADCAM_MODELS[kind]
    where = local_model(model_name)  # a test-bed name (tiny-random-vit / -resnet) -> its folder
    try:
        net = timm.create_model(timm_model_name(where), pretrained=True)
    except (OSError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot load classifier {model_name!r} for Grad-CAM (timm name, hf-hub:<repo> or local folder): {first}") from exc
    device = pick_device(opts.device)
    net = net.to(device).eval()
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    if kind == "vit":
        if not hasattr(net, "blocks") or not hasattr(net, "patch_embed"):
            raise DataError(f"{model_name!r} is not a ViT; use --source gradcam-resnet")
        grid = net.patch_embed.grid_size
        prefix = int(getattr(net, "num_prefix_tokens", 1))
        target_layers = [net.blocks[-1].norm1]

        def reshape(tokens):
            t = tokens[:, prefix:]
            return t.reshape(t.shape[0], grid[0], grid[1], t.shape[-1]).permute(0, 3, 1, 2)
    else:
        layer = getattr(net, "layer4", None) or getattr(net, "stages", [None])[-1]
        if layer is None:
            raise DataError(f"{model_name!r} has no last convolutional stage (layer4/stages); use a ResNet")
        target_layers, reshape = [layer[-1] if hasattr(layer, "__getitem__") else layer], None
    row = reference_row(data, card, opts)
    im = open_row(data, row)  # cropped when the dataset is: points are in crop pixels
    w, h = im.size
    arr = np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    mean = np.asarray(cfg.get("mean", (0.485, 0.456, 0.406)), dtype=np.float32)
    std = np.asarray(cfg.get("std", (0.229, 0.224, 0.225)), dtype=np.float32)
    x = torch.from_numpy(((arr - mean) / std).transpose(2, 0, 1).copy())[None].to(device)
    with GradCAM(model=net, target_layers=target_layers, reshape_transform=reshape) as cam:
        heat = cam(input_tensor=x, targets=None)[0]  # the top-scoring class of the classifier
    k = opts.num_keypoints or len(data.categories) or 3
    peaks = cam_peaks(heat, k, max(1, size // 16))
    pts = peaks * np.array([w / size, h / size])
    names = tuple(f"gradcam_{i + 1}" for i in range(k))
    provenance = {"source": f"gradcam-{kind}", "model": model_name, "input_size": size,
                  "target_layer": "blocks[-1].norm1" if kind == "vit" else "last block of the last stage",
                  "library": "pytorch-grad-cam"}
    return Reference(str(data.df["image_id"].iloc[row]), names, (), pts, provenance)

class GradCamReference(ReferenceSource):
    """Grad-CAM of a timm classifier's top class on the reference image; the K strongest local
    maxima become ``gradcam_1..K``."""

    kind = "resnet"

    def annotate(self, data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
        return gradcam_reference(data, card, opts, self.kind)


@REFERENCE_SOURCES.register("gradcam-resnet", "Grad-CAM of a ResNet classifier: top-K local maxima, named by rank")
class GradCamResNet(GradCamReference):
    kind = "resnet"
    options = {"model": f"timm name, hf-hub:<repo> or local folder (offline: tiny-random-resnet) "
                        f"[{DEFAULT_GRADCAM_MODELS['resnet']}]"}


@REFERENCE_SOURCES.register("gradcam-vit", "Grad-CAM of a ViT classifier: top-K local maxima, named by rank")
class GradCamViT(GradCamReference):
    kind = "vit"
    options = {"model": f"timm name, hf-hub:<repo> or local folder (offline: tiny-random-vit) "
                        f"[{DEFAULT_GRADCAM_MODELS['vit']}]"}
