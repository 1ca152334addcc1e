"""What a run can keep besides its record, on request: the embeddings it evaluated (with image ids
and identities) and its trained backbone's weights (to evaluate again with --weights).

Embeddings are a NumPy ``.npz`` (``embeddings`` (N, D) float32 and, row by row, ``image_id``,
``identity``, ``split``; strings as fixed-width unicode, so ``np.load`` needs no pickle) and a
``.csv`` beside it with the same rows and columns but the vectors (``row`` indexes
``embeddings``): numpy reads the one, ``pandas.read_csv`` the other, with no extra package
(parquet would need pyarrow). Weights are safetensors (no pickle, read by ``--weights``): the whole
trained network, the backbone's tensors under ``backbone.`` and a KPE/CKPE keypoint embedding under
``encoding.``, so evaluating them again scores the same model, keypoint channel included.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from ..core.errors import ResultsError


@dataclass(frozen=True)
class Keep:
    """Files a run writes besides its record (None: not asked)."""

    embeddings: Path | None = None  # .npz (its .csv beside it)
    weights: Path | None = None  # .safetensors of the trained network (backbone and keypoint embedding)


def embeddings_paths(path: Path) -> tuple[Path, Path]:
    """(the .npz, the .csv) of an embeddings export asked for as ``path`` (with or without .npz)."""
    path = Path(path).expanduser()
    stem = path.with_suffix("") if path.suffix == ".npz" else path
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".csv")


def save_embeddings(path: Path, vectors: torch.Tensor, table: pd.DataFrame) -> Path:
    """Write ``vectors`` (N, D) and ``table`` (N rows: image_id, identity, split); returns the .npz."""
    npz, csv = embeddings_paths(path)
    array = vectors.detach().float().cpu().numpy()
    if len(table) != len(array):
        raise ValueError(f"{len(array)} embeddings for {len(table)} rows")
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez(npz, embeddings=array, **{c: table[c].astype(str).to_numpy(dtype=str) for c in table.columns})
        table.assign(row=np.arange(len(table))).to_csv(csv, index=False)
    except OSError as exc:
        raise ResultsError(f"--save-embeddings {path}: cannot write ({exc.strerror or exc})") from exc
    return npz


def save_weights(path: Path, network: torch.nn.Module) -> Path:
    """The network's weights as safetensors (tensors made contiguous and unshared, as the format needs)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()}
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path))
    except OSError as exc:
        raise ResultsError(f"cannot write the weights {path} ({exc.strerror or exc})") from exc
    return path
