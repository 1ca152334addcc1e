"""Test-bed models for offline smoke runs: a tiny random-init Stable Diffusion folder (diffusers
layout) and tiny random-init timm classifiers for Grad-CAM, each built once into the cache.

`--keypoints ground-truth@sd:model=tiny-random-sd` makes the `sd` featurizer load the SD folder;
`ref_model=tiny-random-vit` / `tiny-random-resnet` make Grad-CAM load a classifier. Their weights
are random: the pipelines (VAE -> noised latents -> UNet up-block features -> cosine matching;
Grad-CAM -> peaks) are real, the features are not. Used by the tiny tables and the tests; the
featurizers only ask ``local_model`` where such a name lives.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..core.paths import cache_dir

TINY_SD = "tiny-random-sd"


# diffusers config dicts: the tiny test bed, and the shape of stabilityai/stable-diffusion-2-1 (its
# vae/ and unet/ config.json) for random-init benchmarks that download nothing
TINY_SD_CONFIG = {
    "vae": dict(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                block_out_channels=(8, 16), latent_channels=4, layers_per_block=1, norm_num_groups=4, sample_size=32),
    "unet": dict(sample_size=16, layers_per_block=1, block_out_channels=(8, 16, 16), norm_num_groups=4,
                 cross_attention_dim=16, attention_head_dim=2,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
    "text_dim": 16,
}
SD21_CONFIG = {
    "vae": dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2, norm_num_groups=32,
                sample_size=768, scaling_factor=0.18215),
    "unet": dict(sample_size=96, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280), norm_num_groups=32,
                 cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
    "text_dim": 1024,  # OpenCLIP ViT-H's text width; its 77 tokens are the empty prompt's embedding
}
# SD 2.1's scheduler/scheduler_config.json (the noise schedule add_noise uses)
SD21_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, prediction_type="v_prediction")


def random_sd(config: dict, scheduler: dict | None = None):
    """(vae, unet, scheduler, prompt embeddings) of random-init models built from ``config`` (one
    of the dicts above) in memory, on torch's current default device: what ``SDFeaturizer.install``
    takes. The text encoder is replaced by random embeddings of its width: it runs once per
    featurizer, for the empty prompt, and is no part of the per-image cost."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    vae, unet = AutoencoderKL(**config["vae"]), UNet2DConditionModel(**config["unet"])
    embeds = torch.randn(1, 77, config["text_dim"])
    return vae, unet, DDPMScheduler(**(scheduler or {"num_train_timesteps": 1000})), embeds


def make_tiny_sd(root: Path) -> Path:
    """Write a tiny random diffusers SD model (vae, unet, scheduler, text encoder, tokenizer) to root."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = Path(root)
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        AutoencoderKL(**TINY_SD_CONFIG["vae"]).save_pretrained(root / "vae")
        UNet2DConditionModel(**TINY_SD_CONFIG["unet"]).save_pretrained(root / "unet")
        DDPMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
        CLIPTextModel(CLIPTextConfig(vocab_size=10, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                                     pad_token_id=1)).save_pretrained(root / "text_encoder")
    finally:
        torch.random.set_rng_state(state)
    tok = root / "tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "a": 3}))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tok / "vocab.json"), str(tok / "merges.txt")).save_pretrained(str(tok))
    return root


def ensure_tiny_sd(cache: Path | None = None) -> Path:
    """The cached tiny SD folder, built on first use (into a temporary folder, then renamed)."""
    target = Path(cache or cache_dir()) / TINY_SD
    if (target / "unet" / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{TINY_SD}-"))
    try:
        make_tiny_sd(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "unet" / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# tiny random-init timm classifiers for Grad-CAM smoke runs (recipe key `ref_model=tiny-random-vit`)
TINY_CLASSIFIERS: dict[str, tuple[str, dict]] = {
    "tiny-random-resnet": ("resnet10t", {"num_classes": 10}),
    "tiny-random-vit": ("vit_tiny_patch16_224", {"num_classes": 10, "embed_dim": 32, "depth": 2, "num_heads": 2}),
}


def ensure_tiny_classifier(name: str, cache: Path | None = None) -> Path:
    """The cached folder (timm config.json + safetensors) of a tiny random classifier, built on first use."""
    import timm
    import torch
    from timm.models import save_for_hf

    arch, args = TINY_CLASSIFIERS[name]
    target = Path(cache or cache_dir()) / name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        net = timm.create_model(arch, pretrained=False, **args)
        save_for_hf(net, str(tmp), model_args=args, safe_serialization=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        torch.random.set_rng_state(state)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def local_model(name: str) -> str:
    """Where a model named ``name`` loads from: a test-bed name -> its cached folder (built on first
    use); any other name (hub id, timm name, folder) is returned as is."""
    if name == TINY_SD:
        return str(ensure_tiny_sd())
    if name in TINY_CLASSIFIERS:
        return str(ensure_tiny_classifier(name))
    return name
