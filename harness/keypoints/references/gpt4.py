"""GPT-4 reference: a vision model (OpenAI API) picks and names K discriminative keypoints.

The image goes as a base64 data URL; the reply is a strict JSON schema, validated (K distinct
names, points inside the image); left/right pairs are inferred from the names. 429, 5xx and
timeouts are retried with backoff by the client; a refusal or a malformed reply is one line.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re

import numpy as np

from ...core.errors import DataError
from ...data.cards import Card
from ...data.dataset import ReidData, image_sizes, open_row, row_bboxes
from ..sets import Reference, check_inside, infer_flip_pairs
from .base import REFERENCE_SOURCES, AnnotateOptions, ReferenceSource

DEFAULT_GPT_MODEL = "gpt-4o"

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
class Gpt4Reference(ReferenceSource):
    """A vision model behind the OpenAI API names and places the K most identity-discriminative
    anatomical keypoints (structured output with a strict JSON schema)."""

    options = {"model": f"model name [{DEFAULT_GPT_MODEL}]",
               "base_url": "OpenAI-compatible API endpoint [OPENAI_BASE_URL, else OpenAI's]",
               "max_retries": "retries on 429/5xx/timeouts [4]", "timeout": "seconds per request [60]"}

    def annotate(self, data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
        key = os.environ.get("OPENAI_API_KEY", "").strip()
        if not key:
            raise DataError("OPENAI_API_KEY is not set; export your OpenAI API key to use --source gpt4")
        import openai

        row = self.row(data, card, opts)
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
            unusable = _model_problem(exc, model)
            if unusable:
                raise DataError(unusable) from None
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


MODEL_WORDS = ("does not exist", "deprecated", "retired", "decommissioned", "not found", "unknown model",
               "not supported", "does not support")


def _model_problem(exc, model: str) -> str | None:
    """The one line for a model the API will not run (unknown, retired, misspelt, not enabled for
    this key, or without image input / structured output), or None for any other API error. OpenAI
    answers 404 ``model_not_found``; compatible servers often a 400 naming the model."""
    code = str(getattr(exc, "code", None) or "")
    param = str(getattr(exc, "param", None) or "")
    text = _short(exc).lower()
    about_model = param == "model" or "model" in code or ("model" in text and any(w in text for w in MODEL_WORDS))
    if not about_model:  # a 404 without the model in it is a wrong --base-url, not a wrong model
        return None
    return (f"the OpenAI API cannot run model {model!r} ({_short(exc)}): it may be retired, misspelt, not enabled "
            f"for this key or lack image input; pass another vision model with --model (recipes: ref_model=NAME; "
            f"the default is {DEFAULT_GPT_MODEL})")


def _short(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "message", exc)).split())
    return text[:200]
