"""Reference annotation sources: the K keypoints of ONE reference image (Sec. 3.2, Table 2).

Each source is a factory ``(data, card, options) -> Reference`` registered by name:
  expert          a user-written JSON file (--reference-file, or the dataset card's ``reference``)
  gpt4            a vision model behind the OpenAI API names and places the K most
                  identity-discriminative anatomical keypoints (structured output, JSON schema)
  gradcam-resnet  Grad-CAM of a ResNet classifier; the K strongest local maxima, named by rank
  gradcam-vit     the same with a ViT classifier
  ground-truth    the dataset's own keypoints of that image (synthetic, CTai, IPanda50)
The result is propagated to every image by `harness keypoints propagate`.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Card, DataError, ReidData, cards_dir, open_row, row_bboxes
from .keypoints import Reference, check_inside, image_sizes, infer_flip_pairs, pairs_within, read_reference, row_of_image
from .registry import Registry

REFERENCE_SOURCES: Registry = Registry("reference source")

DEFAULT_GPT_MODEL = "gpt-4o"
DEFAULT_GRADCAM_MODELS = {"resnet": "resnet50.a1_in1k", "vit": "vit_base_patch16_224.augreg2_in21k_ft_in1k"}


@dataclass(frozen=True)
class AnnotateOptions:
    image: str | None = None  # image id of the reference image (default: the dataset's first image)
    num_keypoints: int | None = None  # K
    reference_file: Path | None = None  # expert: the annotation file
    model: str | None = None  # gpt4: model name; gradcam-*: timm name, hf-hub:<repo> or local folder
    base_url: str | None = None  # gpt4: OpenAI-compatible endpoint (default: OPENAI_BASE_URL or OpenAI's)
    max_retries: int = 4  # gpt4: retries of 429 / 5xx / timeouts, exponential backoff (OpenAI client)
    timeout: float = 60.0  # gpt4: seconds per request
    device: str = "auto"

    def __post_init__(self):
        if self.num_keypoints is not None and self.num_keypoints < 1:
            raise ValueError(f"--num-keypoints must be >= 1, got {self.num_keypoints}")


def reference_row(data: ReidData, opts: AnnotateOptions) -> int:
    return row_of_image(data, opts.image) if opts.image is not None else 0


# ---------------------------------------------------------------- expert


@REFERENCE_SOURCES.register("expert", "a person's annotation of one image (JSON file; the card's `reference`)")
def expert(data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
    path = opts.reference_file
    if path is None:
        if not card.reference:
            raise DataError(
                f"dataset {card.name} ships no expert reference (card field `reference`); pass --reference-file PATH"
            )
        base = card.path.parent if card.path is not None else cards_dir()
        path = base / card.reference
    ref = read_reference(Path(path), data)
    if opts.image is not None and str(opts.image) != ref.image_id:
        raise DataError(f"--image {opts.image} differs from the image of the expert file {path} ({ref.image_id})")
    if opts.num_keypoints is not None:
        if opts.num_keypoints > len(ref.categories):
            raise DataError(f"--num-keypoints {opts.num_keypoints}: the expert file {path} has {len(ref.categories)}")
        cats = ref.categories[: opts.num_keypoints]
        ref = Reference(ref.image_id, cats, pairs_within(ref.flip_pairs, cats), ref.points[: len(cats)], ref.provenance)
    return Reference(ref.image_id, ref.categories, ref.flip_pairs, ref.points,
                     {"source": "expert", "file": str(path)})


# ---------------------------------------------------------------- ground truth of one image


@REFERENCE_SOURCES.register("ground-truth", "the dataset's own keypoints of the reference image")
def ground_truth(data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
    if data.keypoints is None:
        raise DataError(f"dataset {data.name} has no ground-truth keypoints; choose another --source")
    row = reference_row(data, opts)
    k = opts.num_keypoints or len(data.categories)
    if k > len(data.categories):
        raise DataError(f"--num-keypoints {k}: dataset {data.name} has {len(data.categories)} keypoint categories")
    pts = data.keypoints[row, :k]
    if not np.isfinite(pts).all():
        raise DataError(f"image {data.df['image_id'].iloc[row]} lacks some ground-truth keypoints; choose another --image")
    cats = data.categories[:k]
    return Reference(str(data.df["image_id"].iloc[row]), cats, pairs_within(data.flip_pairs, cats), pts,
                     {"source": "ground-truth"})


# ---------------------------------------------------------------- GPT-4 (OpenAI API)

GPT_PROMPT = (
    "This image shows an animal from a re-identification dataset ({dataset}). Choose the {k} anatomical "
    "keypoints that are most useful to tell individuals of this species apart (identity-discriminative "
    "landmarks, e.g. parts whose shape, colour or markings differ between individuals). For each, give a "
    "short snake_case name (left/right are the animal's own sides) and its pixel position (x to the "
    "right, y down) in this {w}x{h} image. Return exactly {k} keypoints with distinct names."
)


def keypoint_schema(k: int) -> dict:
    point = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "x": {"type": "number"}, "y": {"type": "number"}},
        "required": ["name", "x", "y"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"keypoints": {"type": "array", "items": point, "minItems": k, "maxItems": k}},
        "required": ["keypoints"],
        "additionalProperties": False,
    }


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def parse_gpt_reply(content: str | None, k: int, w: float, h: float) -> tuple[tuple[str, ...], np.ndarray]:
    """Validate the model's JSON: exactly k keypoints, distinct non-empty names, points inside."""
    where = "the model's reply"
    if not content:
        raise DataError(f"{where} is empty")
    try:
        raw = json.loads(content)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where} is not valid JSON ({exc.msg}); try again or use another --model") from exc
    items = raw.get("keypoints") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise DataError(f"{where} lacks a 'keypoints' list")
    if len(items) != k:
        raise DataError(f"{where} has {len(items)} keypoints, {k} were asked for")
    names, pts = [], []
    for item in items:
        if not isinstance(item, dict) or not {"name", "x", "y"} <= set(item):
            raise DataError(f"{where}: every keypoint needs name, x and y; got {item!r}")
        name = _snake(str(item["name"]))
        try:
            x, y = float(item["x"]), float(item["y"])
        except (TypeError, ValueError):
            raise DataError(f"{where}: keypoint {item['name']!r} has non-numeric coordinates") from None
        if not name:
            raise DataError(f"{where}: a keypoint has an empty name")
        names.append(name)
        pts.append((x, y))
    if len(set(names)) != len(names):
        raise DataError(f"{where}: keypoint names are not distinct: {names}")
    pts = np.asarray(pts, dtype=np.float64)
    check_inside(pts, w, h, where, names)
    return tuple(names), pts


@REFERENCE_SOURCES.register("gpt4", "a vision model (OpenAI API) picks and names K discriminative keypoints")
def gpt4(data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if not key:
        raise DataError("OPENAI_API_KEY is not set; export your OpenAI API key to use --source gpt4")
    import openai

    row = reference_row(data, opts)
    k = opts.num_keypoints or len(data.categories) or 3
    model = opts.model or DEFAULT_GPT_MODEL
    path = data.root / data.df["path"].iloc[row]
    w, h = image_sizes(data, [row])[0]
    if row_bboxes(data, [row]):  # a cropped dataset: the model sees the crop its points refer to
        buf = io.BytesIO()
        open_row(data, row).save(buf, format="PNG")
        mime, blob = "image/png", buf.getvalue()
    else:
        mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}.get(
            path.suffix.lower(), "image/jpeg")
        blob = path.read_bytes()
    url = f"data:{mime};base64,{base64.b64encode(blob).decode()}"
    prompt = GPT_PROMPT.format(dataset=data.name, k=k, w=int(w), h=int(h))
    client = openai.OpenAI(api_key=key, base_url=opts.base_url or None, max_retries=opts.max_retries,
                           timeout=opts.timeout)
    try:
        resp = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": url}},
            ]}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "keypoints", "strict": True, "schema": keypoint_schema(k)}},
        )
    except openai.APIStatusError as exc:
        raise DataError(f"OpenAI API error {exc.status_code} after {opts.max_retries} retries: {_short(exc)}") from None
    except openai.APITimeoutError:
        raise DataError(f"OpenAI API timed out ({opts.timeout:g} s per request, {opts.max_retries} retries)") from None
    except openai.APIConnectionError as exc:
        raise DataError(f"cannot reach the OpenAI API ({_short(exc)}); check the network or --base-url") from None
    if not resp.choices:
        raise DataError("the model's reply has no choices")
    message = resp.choices[0].message
    if getattr(message, "refusal", None):
        raise DataError(f"the model refused: {message.refusal}")
    names, pts = parse_gpt_reply(message.content, k, w, h)
    provenance = {"source": "gpt4", "model": model, "reply_model": getattr(resp, "model", None),
                  "response_id": getattr(resp, "id", None),
                  "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()[:16]}
    return Reference(str(data.df["image_id"].iloc[row]), names, infer_flip_pairs(names), pts, provenance)


def _short(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "message", exc)).split())
    return text[:200]


# ---------------------------------------------------------------- Grad-CAM


def cam_peaks(cam: np.ndarray, k: int, min_distance: int) -> np.ndarray:
    """Top-k local maxima of a (H, W) map, at least ``min_distance`` pixels apart: (k, 2) (x, y) pixel centres."""
    import torch
    import torch.nn.functional as F

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


def gradcam_reference(data: ReidData, opts: AnnotateOptions, kind: str) -> Reference:
    import timm
    import torch
    from PIL import Image
    from pytorch_grad_cam import GradCAM

    from .distributed import pick_device
    from .featurizers import timm_model_name

    from .tiny_sd import TINY_CLASSIFIERS, ensure_tiny_classifier

    model_name = opts.model or DEFAULT_GRADCAM_MODELS[kind]
    # the offline smoke classifiers (tiny-random-vit / tiny-random-resnet) are built into the cache
    where = str(ensure_tiny_classifier(model_name)) if model_name in TINY_CLASSIFIERS else model_name
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
    row = reference_row(data, opts)
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


@REFERENCE_SOURCES.register("gradcam-resnet", "Grad-CAM of a ResNet classifier: top-K local maxima, named by rank")
def gradcam_resnet(data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
    return gradcam_reference(data, opts, "resnet")


@REFERENCE_SOURCES.register("gradcam-vit", "Grad-CAM of a ViT classifier: top-K local maxima, named by rank")
def gradcam_vit(data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
    return gradcam_reference(data, opts, "vit")
