"""Train/test splits: wildlife-datasets' own split classes, or identity k-fold cross-validation.

disjoint: the paper's protocol, 80/20 by individuals (DisjointSetSplit with 20% of the identities
          held out); evaluation: every test image queries all other test images.
closed:   WildlifeDatasets' ClosedSetSplit(0.8); evaluation: test images query training images.
folds:    (disjoint and open) the identities are partitioned into K groups by scikit-learn's
          GroupKFold (shuffled, seeded by the split seed); fold i tests group i and trains on the
          rest, so K = 5 is an 80/20 split by individuals with every identity tested exactly once.
open:     identity folds (fold 0 of 5 without --folds); half of the test identities are new (no
          gallery image: every image of theirs is a query), the others known: the earlier half of
          each one's capture days in the gallery, the later days queries (no day on both sides),
          or, without two dates, half its images by a seeded shuffle. The threshold that answers "new" is chosen on an
          open set built the same way from a validation split of the TRAINING identities (the
          inner split of --validate), held out from training: ``calibration``.
The fingerprint is a hash of the dataset's fingerprint and the sorted train and test image ids:
equal for every method given the same dataset, protocol, split seed and fold, different between
datasets even when their image ids coincide.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from ..core.errors import DataError


@dataclass(frozen=True)
class OpenSet:
    """An open-set problem over some identities: gallery rows (known identities only), query rows
    (the known identities' other images and every image of the new ones)."""

    gallery: np.ndarray
    queries: np.ndarray
    new_identities: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    protocol: str
    train: np.ndarray  # row positions into the dataset DataFrame
    test: np.ndarray  # the query rows (open: ``open.queries``)
    fingerprint: str
    open: OpenSet | None = None  # open protocol: the test side (gallery, queries, new identities)
    calibration: OpenSet | None = None  # open protocol: from held-out training identities, for the threshold


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
    n_ids = _identity_count(inner)
    if n_ids < VALIDATION_FOLDS:  # identity_folds' own message would name a --folds the user never gave
        raise DataError(f"a validation split holds out 1/{VALIDATION_FOLDS} of the training identities: it needs "
                        f"at least {VALIDATION_FOLDS} of them, this split trains on {n_ids}")
    fit, held = identity_folds(inner, VALIDATION_FOLDS, seed + 1)[0]
    return np.sort(train[fit]), np.sort(train[held])


OPEN_NEW_SHARE = 0.5  # of an open set's identities, the share that is new (no gallery image)
OPEN_FOLDS = 5  # identity folds of the open protocol without --folds (fold 0: 80/20 by individuals)


def _identity_count(df: pd.DataFrame) -> int:
    """Identities a split can use: the unknown identity is in no split (as in ``identity_folds``)."""
    return len(set(df["identity"].astype(str)) - {"unknown"})


def _fold_size(n_ids: int, folds: int, fold: int) -> int:
    """Identities in fold ``fold`` of ``folds`` over ``n_ids`` identities (0 when GroupKFold cannot
    split them). GroupKFold(shuffle=True) deals the shuffled identities out by np.array_split, so
    the count depends on ``n_ids`` alone, not on the seed or on how many images each one has."""
    return len(np.array_split(np.arange(n_ids), folds)[fold]) if n_ids >= folds else 0


def _open_fits(n_ids: int, folds: int, fold: int, validate: bool) -> bool:
    """Whether ``n_ids`` identities give the open protocol's split: the test side and the calibration
    split of the training identities each need 2 identities, a known and a new one (``open_set``)."""
    test = _fold_size(n_ids, folds, fold)
    train = n_ids - test
    if validate:  # the test side is then a validation split of the outer training identities
        test = _fold_size(train, VALIDATION_FOLDS, 0)
        train -= test
    return test >= 2 and _fold_size(train, VALIDATION_FOLDS, 0) >= 2


def check_open_size(df: pd.DataFrame, folds: int, fold: int, validate: bool) -> None:
    """One line naming what the open protocol needs, before the fold and open-set checks inside it
    fail on a subset with a count the user cannot relate to their dataset."""
    n_ids = _identity_count(df)
    if _open_fits(n_ids, folds, fold, validate):
        return
    need = n_ids + 1
    while not _open_fits(need, folds, fold, validate):  # fold sizes never shrink as identities are added
        need += 1
    test = f"identity fold {fold} of {folds}"
    test = f"1/{VALIDATION_FOLDS} of the training identities of {test}" if validate else test
    raise DataError(f"--protocol open{' --validate' if validate else ''} needs at least {need} identities "
                    f"(test: {test}; calibration: 1/{VALIDATION_FOLDS} of the remaining training identities, held "
                    f"out from training; each needs 2, a known and a new one); the dataset has {n_ids}")


def open_set(df: pd.DataFrame, rows: np.ndarray, seed: int, days: np.ndarray | None = None) -> OpenSet:
    """The open-set problem over the identities of ``rows``: a seeded share of them new, the others
    known, each one's images split into gallery and queries by ``_known_halves`` (``days``: one
    capture day per DataFrame row, None where unknown)."""
    identity = df["identity"].astype(str).to_numpy()
    names = np.array(sorted(set(identity[rows])))
    if len(names) < 2:
        raise DataError(f"an open set needs at least 2 identities (known and new), these rows have {len(names)}")
    rng = np.random.default_rng(seed)
    n_new = int(min(max(1, round(OPEN_NEW_SHARE * len(names))), len(names) - 1))
    new = set(rng.permutation(names)[:n_new].tolist())
    gallery, queries = [], []
    for name in names:
        own = rows[identity[rows] == name]
        if name in new:
            queries.append(own)
            continue
        seen, asked = _known_halves(own, days, rng)
        gallery.append(seen)
        queries.append(asked)
    return OpenSet(np.sort(np.concatenate(gallery)), np.sort(np.concatenate(queries)), tuple(sorted(new)))


def _known_halves(own: np.ndarray, days: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(gallery, queries) of one known identity: with two or more capture days, its earlier days
    (half of them, rounded up; undated images count as one last day) in the gallery, so that no
    day is on both sides (frames of one day are near-duplicates); else half its images (rounded
    up), in a seeded shuffle."""
    # Not wildlife-datasets' TimeProportionSplit(ratio=0.5), which differs in what matters here:
    # an identity with one date goes wholly to its training side (no query left of a known
    # identity), undated images are dropped, and min(n - 1, np.round(n / 2)) rounds half to even
    # (2 of 5 days, not 3). Switching would also move images of committed records' splits.
    if days is not None:
        day = np.array(["~" if d is None else str(d) for d in days[own]])
        names = np.unique(day)
        if len(names) >= 2:
            early = np.isin(day, names[: -(-len(names) // 2)])
            return own[early], own[~early]
    order = own[rng.permutation(len(own))]
    cut = -(-len(order) // 2)
    return order[:cut], order[cut:]


def _open_split(df: pd.DataFrame, outer: Split, seed: int, dataset: str, days: np.ndarray | None) -> Split:
    """The open protocol over an identity split: its test identities become the open set, a
    validation split of its training identities (held out from training) the calibration set."""
    fit, held = inner_validation(df, outer.train, seed)
    test_side = open_set(df, outer.test, seed, days)
    calibration = open_set(df, held, seed + 2, days)
    gallery_ids = ",".join(sorted(df["image_id"].astype(str).to_numpy()[test_side.gallery]))
    key = f"{dataset}|open|gallery:{hashlib.sha256(gallery_ids.encode()).hexdigest()[:16]}"
    checked = _checked(df, "open", fit, test_side.queries, key)
    return Split("open", checked.train, checked.test, checked.fingerprint, test_side, calibration)


@dataclass(frozen=True)
class HeldOut:
    """What a split holds out for testing: ``test_fraction`` of the identities (disjoint) or of the
    images (closed), or, with ``folds``, identity fold ``fold`` (0 when None) of ``folds``; with
    ``validate``, a validation part of the outer training identities instead of the outer test."""

    test_fraction: float = 0.2
    folds: int | None = None
    fold: int | None = None
    validate: bool = False


def make_split(df: pd.DataFrame, protocol: str, seed: int = 666, *, dataset: str = "",
               held_out: HeldOut = HeldOut(), days: np.ndarray | None = None) -> Split:
    """The split of one run; ``dataset`` (the dataset's fingerprint) enters the split fingerprint.
    With ``held_out.validate`` the outer training identities are split again and the run is
    evaluated on the held-out part (hyperparameter tuning), never on the outer test identities.
    ``days``: each row's capture day (None: no dates), which orders the open protocol's gallery
    before its queries."""
    df = df.reset_index(drop=True)
    by_identity = "disjoint" if protocol == "open" else protocol
    folds, fold = held_out.folds, held_out.fold
    if protocol == "open" and folds is None:
        folds, fold = OPEN_FOLDS, 0
    if protocol == "open":
        check_open_size(df, folds, fold or 0, held_out.validate)
    outer = _outer_split(df, by_identity, seed, held_out.test_fraction, dataset, folds, fold)
    if held_out.validate:
        if by_identity != "disjoint":
            raise DataError("a validation split holds out identities: it needs the disjoint or open protocol")
        train, held = inner_validation(df, outer.train, seed)
        outer = _checked(df, by_identity, train, held, f"{dataset}|validation of {outer.fingerprint}")
    return _open_split(df, outer, seed, dataset, days) if protocol == "open" else outer


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
        need = identities_needed(test_fraction)
        raise DataError(f"a split needs at least 2 identities (one to train on, one to test), the dataset has {n_ids}: "
                        f"add images of other individuals (at least {need} identities for a test split that means "
                        "something)")
    wd_splits = wildlife_identity_splits()
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


WILDLIFE_SPLITS = "_harness_wildlife_splits"  # wildlife-datasets' splits/ folder, loaded under a private name


def wildlife_identity_splits():
    """wildlife-datasets' identity-split module (``DisjointSetSplit``, ``ClosedSetSplit``), loaded from
    the installed package's own files without running the package's ``__init__``: that imports every
    dataset class, Hugging Face datasets and matplotlib (about 1.4 s of CPU, a third of a dry run),
    none of which a split needs. The code that splits is the library's, unchanged (a test compares
    it with ``wildlife_datasets.splits``)."""
    if WILDLIFE_SPLITS not in sys.modules:
        found = importlib.util.find_spec("wildlife_datasets")  # locates the package, does not run it
        if found is None or not found.submodule_search_locations:
            raise DataError("wildlife-datasets is not installed: pip install -e . installs it")
        spec = importlib.machinery.ModuleSpec(WILDLIFE_SPLITS, None, is_package=True)
        spec.submodule_search_locations = [str(Path(found.submodule_search_locations[0]) / "splits")]
        sys.modules[WILDLIFE_SPLITS] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"{WILDLIFE_SPLITS}.identity_split")


def _checked(df: pd.DataFrame, protocol: str, train: np.ndarray, test: np.ndarray, dataset: str) -> Split:
    if protocol == "disjoint":
        overlap = set(df["identity"].iloc[train]) & set(df["identity"].iloc[test])
        if overlap:  # guaranteed by DisjointSetSplit; checked because results depend on it
            raise DataError(f"disjoint split shares identities between train and test: {sorted(overlap)[:5]}")
        counts = df["identity"].iloc[test].value_counts()
        lonely = counts[counts < 2]
        if len(lonely) == len(counts):
            raise DataError("disjoint split: no test identity has 2 or more images, nothing can be queried")
    if protocol == "open" and len(set(df["identity"].iloc[train]) & set(df["identity"].iloc[test])):
        raise DataError("open split shares identities between train and test")
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{protocol} split produced an empty train or test set ({len(train)}/{len(test)} images)")
    return Split(protocol, train, test, fingerprint(df, train, test, dataset))


# A test side below these cannot tell a model from a random ranking: its top-1 is refused unless
# the run says it knows (``allow_small_test``). 2 identities is the least a ranking can confuse;
# at a chance of one half a coin would score as well as a model scoring "50".
MIN_TEST_IDENTITIES = 2
MAX_CHANCE_TOP1 = 0.5


def identities_needed(test_fraction: float) -> int:
    """The fewest identities whose held-out share rounds to ``MIN_TEST_IDENTITIES``."""
    return next(n for n in range(2, 10_000) if round(test_fraction * n) >= MIN_TEST_IDENTITIES)


@dataclass(frozen=True)
class QuerySide:
    """How much a split's test side can tell: its identities, its queries, and the chance top-1,
    the expected top-1 of a uniformly random ranking of each query's gallery (per answerable query,
    the share of its gallery that shows its own identity; averaged over those queries; None when no
    query is answerable). Computed under the whole gallery (no --exclude)."""

    identities: int
    queries: int
    chance_top1: float | None

    def small(self) -> bool:
        return self.identities < MIN_TEST_IDENTITIES or (self.chance_top1 or 0.0) >= MAX_CHANCE_TOP1

    def describe(self) -> str:
        chance = "no answerable query" if self.chance_top1 is None else f"chance top-1 {100 * self.chance_top1:.0f}%"
        plural = "identity" if self.identities == 1 else "identities"
        return f"{self.identities} test {plural}, {self.queries} queries, {chance}"


def _chance(query_ids: np.ndarray, gallery_ids: np.ndarray, same: bool) -> float | None:
    """Mean over answerable queries of the share of the gallery showing the query's identity;
    ``same``: the queries are their own gallery, each without itself."""
    names, counts = np.unique(gallery_ids, return_counts=True)
    count = dict(zip(names.tolist(), counts.tolist()))
    matches = np.array([count.get(i, 0) - (1 if same else 0) for i in query_ids.tolist()], dtype=float)
    size = len(gallery_ids) - (1 if same else 0)
    answerable = matches > 0
    if not answerable.any() or size <= 0:
        return None
    return float((matches[answerable] / size).mean())


def query_side(df: pd.DataFrame, split: Split) -> QuerySide:
    """The split's ``QuerySide``: disjoint queries each other, closed the training images, open's
    known queries its gallery (the new identities' queries have no match by design)."""
    identity = df.reset_index(drop=True)["identity"].astype(str).to_numpy()
    queries = split.test
    if split.open is not None:
        chance = _chance(identity[split.open.queries], identity[split.open.gallery], same=False)
        queries = split.open.queries
    elif split.protocol == "closed":
        chance = _chance(identity[split.test], identity[split.train], same=False)
    else:
        chance = _chance(identity[split.test], identity[split.test], same=True)
    return QuerySide(len(set(identity[queries])), len(queries), chance)


def _worst_side(df: pd.DataFrame, protocol: str, seed: int, held_out: HeldOut) -> QuerySide | None:
    """The worst test side (a small one first, then the highest chance) over every fold of a candidate
    split; None if it cannot be made."""
    folds = range(held_out.folds) if held_out.folds else [None]
    sides = []
    for fold in folds:
        try:
            split = make_split(df, protocol, seed, held_out=HeldOut(folds=held_out.folds, fold=fold))
        except DataError:
            return None
        sides.append(query_side(df, split))
    return max(sides, key=lambda s: (s.small(), s.chance_top1 or 0.0))


def what_would_work(df: pd.DataFrame, seed: int) -> list[str]:
    """Settings under which every fold's test side is big enough, for the refusal to name: the most
    identity folds that hold 2 test identities each, the closed protocol, and how many identities
    the default 80/20 split needs."""
    n_ids = _identity_count(df)
    out = []
    if n_ids // 2 >= 2:
        k = n_ids // 2
        side = _worst_side(df, "disjoint", seed, HeldOut(folds=k))
        if side is not None and not side.small():
            out.append(f"--folds {k} (every identity tested once; chance top-1 up to {100 * side.chance_top1:.0f}%)")
    side = _worst_side(df, "closed", seed, HeldOut())
    if side is not None and not side.small():
        out.append(f"--protocol closed (test images of every identity against the training images; chance top-1 "
                   f"{100 * side.chance_top1:.0f}%)")
    need = identities_needed(HeldOut.test_fraction)
    if n_ids < need:
        out.append(f"at least {need} identities (the 80/20 split holds out {round(100 * HeldOut.test_fraction)}%)")
    return out


def small_test_message(df: pd.DataFrame, side: QuerySide, seed: int, name: str) -> str:
    """The one line that refuses a too-small test side and says what would work instead."""
    options = what_would_work(df, seed)
    instead = f"what would work: {'; '.join(options)}; or " if options else ""
    return (f"dataset {name}: the test split is too small to mean anything ({side.describe()}: a random ranking "
            f"scores as well); {instead}--allow-small-test to run it anyway (caveat in the record)")
