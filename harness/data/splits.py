"""Train/test splits: wildlife-datasets' own split classes, or identity k-fold cross-validation.

disjoint: the paper's protocol, 80/20 by individuals (DisjointSetSplit with 20% of the identities
          held out); evaluation: every test image queries all other test images.
closed:   WildlifeDatasets' ClosedSetSplit(0.8); evaluation: test images query training images.
folds:    (disjoint only) the identities are partitioned into K groups by scikit-learn's
          GroupKFold (shuffled, seeded by the split seed); fold i tests group i and trains on the
          rest, so K = 5 is an 80/20 split by individuals with every identity tested exactly once.
The fingerprint is a hash of the dataset's fingerprint and the sorted train and test image ids:
equal for every method given the same dataset, protocol, split seed and fold, different between
datasets even when their image ids coincide.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from ..core.errors import DataError


@dataclass(frozen=True)
class Split:
    protocol: str
    train: np.ndarray  # row positions into the dataset DataFrame
    test: np.ndarray
    fingerprint: str


def fingerprint(df: pd.DataFrame, train: np.ndarray, test: np.ndarray, dataset: str = "") -> str:
    ids = df["image_id"].astype(str).to_numpy()
    blob = f"dataset:{dataset}|train:" + ",".join(sorted(ids[train])) + "|test:" + ",".join(sorted(ids[test]))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def identity_folds(df: pd.DataFrame, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of each fold: GroupKFold over identities, shuffled with ``seed``.
    Rows of the unknown identity are in neither (as wildlife-datasets' splits skip them)."""
    identity = df["identity"].astype(str).to_numpy()
    known = np.flatnonzero(identity != "unknown")
    n_ids = len(set(identity[known]))
    if n_ids < folds:
        raise DataError(f"--folds {folds} needs at least {folds} identities, the dataset has {n_ids}")
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for _, test in splitter.split(known, groups=identity[known]):
        test_rows = np.sort(known[test])
        out.append((np.setdiff1d(known, test_rows), test_rows))
    return out


VALIDATION_FOLDS = 5  # the inner validation split holds out 1/5 of the training identities


def inner_validation(df: pd.DataFrame, train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): 1/5 of the training identities held out, by GroupKFold with
    its own seed; the test identities of the outer split are not in either."""
    inner = df.iloc[train].reset_index(drop=True)
    fit, held = identity_folds(inner, VALIDATION_FOLDS, seed + 1)[0]
    return np.sort(train[fit]), np.sort(train[held])


def make_split(df: pd.DataFrame, protocol: str, seed: int = 666, test_fraction: float = 0.2, *,
               dataset: str = "", folds: int | None = None, fold: int | None = None,
               validate: bool = False) -> Split:
    """The split of one run; ``dataset`` (the dataset's fingerprint) enters the split fingerprint.
    With ``validate`` the outer training identities are split again and the run is evaluated on the
    held-out part (hyperparameter tuning), never on the outer test identities."""
    outer = _outer_split(df.reset_index(drop=True), protocol, seed, test_fraction, dataset, folds, fold)
    if not validate:
        return outer
    if protocol != "disjoint":
        raise DataError("a validation split holds out identities: it needs the disjoint protocol")
    train, held = inner_validation(df.reset_index(drop=True), outer.train, seed)
    return _checked(df.reset_index(drop=True), protocol, train, held, f"{dataset}|validation of {outer.fingerprint}")


def _outer_split(df: pd.DataFrame, protocol: str, seed: int, test_fraction: float, dataset: str,
                 folds: int | None, fold: int | None) -> Split:
    if folds is not None:
        if protocol != "disjoint":
            raise DataError("identity folds split identities: they need the disjoint protocol")
        train, test = identity_folds(df, folds, seed)[fold or 0]
        return _checked(df, protocol, train, test, dataset)
    known = df[df["identity"].astype(str) != "unknown"]
    n_ids = known["identity"].nunique()
    if n_ids < 2:
        raise DataError(f"a split needs at least 2 identities, the dataset has {n_ids}")
    from wildlife_datasets import splits as wd_splits  # imports Hugging Face datasets: slow, so here
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
    return _checked(df, protocol, train, test, dataset)


def _checked(df: pd.DataFrame, protocol: str, train: np.ndarray, test: np.ndarray, dataset: str) -> Split:
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
    return Split(protocol, train, test, fingerprint(df, train, test, dataset))
