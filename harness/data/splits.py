"""Train/test splits through wildlife-datasets' own split classes.

disjoint: the paper's protocol, 80/20 by individuals (DisjointSetSplit with 20% of the identities
          held out); evaluation: every test image queries all other test images.
closed:   WildlifeDatasets' ClosedSetSplit(0.8); evaluation: test images query training images.
The fingerprint is a hash of the sorted train and test image ids: equal for every method given the
same dataset, protocol and split seed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.errors import DataError


@dataclass(frozen=True)
class Split:
    protocol: str
    train: np.ndarray  # row positions into the dataset DataFrame
    test: np.ndarray
    fingerprint: str


def fingerprint(df: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> str:
    ids = df["image_id"].astype(str).to_numpy()
    blob = "train:" + ",".join(sorted(ids[train])) + "|test:" + ",".join(sorted(ids[test]))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_split(df: pd.DataFrame, protocol: str, seed: int = 666, test_fraction: float = 0.2) -> Split:
    from wildlife_datasets import splits as wd_splits

    df = df.reset_index(drop=True)
    known = df[df["identity"].astype(str) != "unknown"]
    n_ids = known["identity"].nunique()
    if n_ids < 2:
        raise DataError(f"a split needs at least 2 identities, the dataset has {n_ids}")
    if protocol == "disjoint":
        n_test = int(min(max(1, round(test_fraction * n_ids)), n_ids - 1))
        splitter = wd_splits.DisjointSetSplit(n_class_test=n_test, seed=seed)
    elif protocol == "closed":
        splitter = wd_splits.ClosedSetSplit(1.0 - test_fraction, seed=seed)
    else:
        raise DataError(f"unknown protocol {protocol!r}; valid: disjoint, closed")
    idx_train, idx_test = splitter.split(df)[0]
    train = np.sort(np.asarray(idx_train, dtype=np.int64))
    test = np.sort(np.asarray(idx_test, dtype=np.int64))
    if protocol == "disjoint":
        overlap = set(df["identity"].iloc[train]) & set(df["identity"].iloc[test])
        if overlap:  # guaranteed by DisjointSetSplit; checked because results depend on it
            raise DataError(f"disjoint split shares identities between train and test: {sorted(overlap)[:5]}")
        counts = df["identity"].iloc[test].value_counts()
        lonely = counts[counts < 2]
        if len(lonely) == len(counts):
            raise DataError("disjoint split: no test identity has 2 or more images, nothing can be queried")
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{protocol} split produced an empty train or test set ({len(train)}/{len(test)} images)")
    return Split(protocol, train, test, fingerprint(df, train, test))
