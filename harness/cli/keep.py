"""Files a run keeps besides its record, on request (`--save-weights`, `--save-embeddings`), and
what `harness evaluate` takes of the run options."""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import click

from ..config import RunConfig
from ..engine.export import Keep
from .common import HarnessCLIError

# `harness evaluate`: the run options that decide what is scored and how (no training settings)
EVALUATE_FIELDS = ("method", "dataset", "protocol", "split_seed", "folds", "fold", "exclude", "keypoints",
                   "num_keypoints", "backbone", "pretrained", "weights", "image_size", "seed", "device",
                   "bad_images", "dataset_options")

SPLIT_OPTIONS = ("protocol", "split_seed", "folds", "fold")


def keep_options(fn):
    fn = click.option("--save-embeddings", type=click.Path(path_type=Path), default=None, metavar="PATH",
                      help="also write the evaluated images' embeddings: PATH.npz (numpy: embeddings, image_id, "
                           "identity, split) and PATH.csv (pandas: the same rows, `row` indexes the vectors); "
                           "several runs: PATH-<run name>.npz each")(fn)
    return click.option("--save-weights", is_flag=True,
                        help="keep the trained network's weights (backbone and KPE/CKPE keypoint embedding): <results "
                             "dir>/weights/<run name>.safetensors (evaluate them again: harness evaluate --weights FILE)")(fn)


def kept_files(result: Path, weights: bool, embeddings: Path | None, several: bool) -> Keep | None:
    """What one run (its record ``result``) keeps; ``several``: one of several runs, so the
    embeddings file carries the run's name."""
    if not weights and embeddings is None:
        return None
    if embeddings is not None and several:
        stem = embeddings.with_suffix("") if embeddings.suffix == ".npz" else embeddings
        embeddings = stem.with_name(f"{stem.name}-{result.stem}")
    if embeddings is not None:
        writable_folder(embeddings.expanduser().parent)  # said before training, not after it
    return Keep(embeddings=embeddings,
                weights=result.parent / "weights" / f"{result.stem}.safetensors" if weights else None)


def writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        raise HarnessCLIError(f"--save-embeddings: cannot write into {folder} ({exc.strerror or exc})") from exc


def saved_lines(record: dict) -> list[str]:
    """Where the kept files are, and how to score kept weights again."""
    saved = record.get("saved") or {}
    lines = [f"embeddings: {saved['embeddings']} (and its .csv)"] if "embeddings" in saved else []
    if "weights" in saved:
        cfg = record["config"]
        # only the backbone is kept: a keypoint method's keypoint embedding is not in the file
        method = "vit" if cfg.get("keypoints") else cfg["method"]
        options = "".join(f" --dataset-option {shlex.quote(f'{k}={v}')}"
                          for k, v in (cfg.get("dataset_options") or {}).items())
        # the same split: the split's options where they are not the defaults
        options += "".join(f" --{k.replace('_', '-')} {cfg[k]}" for k in SPLIT_OPTIONS
                           if cfg.get(k) is not None and cfg[k] != getattr(RunConfig, k))
        lines.append(f"weights: {saved['weights']}; evaluate again: harness evaluate --method {method} --dataset "
                     f"{shlex.quote(cfg['dataset'])}{options} --backbone {cfg['backbone']} --image-size "
                     f"{cfg['image_size']} --weights {shlex.quote(saved['weights'])}")
    return lines
