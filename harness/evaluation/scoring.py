"""Scoring one trained model: the metrics of its embeddings under the run's protocol and a gallery
rule, with every registered metric that applies (``evaluation.metrics``).

Gallery rules: None = the whole gallery; ``same-day`` = each query's gallery loses the images of
its own identity taken on its own capture day (cross-day re-identification; a query left without
a match is unanswerable). A dataset with capture days is scored under both rules from one
training (`execute` writes a record for each), since the rule changes evaluation only.

Embeddings are functions of rows (``take``), computed once for every row any rule or split part
needs; the scoring itself never sees a model, so a test can hand it any embeddings.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..data.splits import OpenSet, Split
from . import metrics as registry
from .open_set import RULE, answer, choose_threshold
from .retrieval import Exclusion, retrieval_metrics

GALLERY_RULES = (None, "same-day")
TOP_K = 10  # best gallery matches kept per query for the per-query log (the report shows 5)


def gallery_rules(exclude: str | None, days: np.ndarray | None) -> list:
    """The rules one training is scored under: the run's own first, then (a dataset with capture
    days) the other one."""
    if days is None:
        return [exclude]
    return [exclude] + [rule for rule in GALLERY_RULES if rule != exclude]


def exclusion_keys(days: np.ndarray, rule: str | None) -> np.ndarray | None:
    """One integer key per dataset row (same identity and same key: excluded from each other's
    gallery), or None when nothing beyond the query itself is excluded. Undated rows get a key of
    their own, so they exclude only themselves."""
    if rule is None:
        return None
    codes, _ = pd.factorize(pd.Series(days, dtype=object))  # -1 for a missing day
    return np.where(codes >= 0, codes, -1 - np.arange(len(codes))).astype(np.int64)


def same_day_matters(identities: np.ndarray, days: np.ndarray | None, split: Split, rows: dict) -> bool:
    """Whether the same-day rule would take any gallery image from any query: a query and another
    gallery image of its animal on its day. Where none exist (the open protocol's galleries are a
    known animal's earlier days) a run scored under the rule repeats the record without it."""
    if days is None:
        return False
    keys = exclusion_keys(days, "same-day")

    def pairs(part: np.ndarray) -> list:
        return list(zip(identities[part].tolist(), keys[part].tolist()))

    if split.open is not None:
        cal_gallery, cal_queries = _usable(split.calibration, rows["bad"])
        sides = [(rows["test"], rows["gallery"]), (cal_queries, cal_gallery)]
        return any(set(pairs(queries)) & set(pairs(gallery)) for queries, gallery in sides)
    if split.protocol == "closed":
        return bool(set(pairs(rows["test"])) & set(pairs(rows["train"])))
    test = pairs(rows["test"])  # disjoint: the test images are each other's gallery
    return len(set(test)) < len(test)


@dataclass
class Scored:
    metrics: dict
    per_query: dict  # lists, one entry per query, for the record's "queries"
    open_set: dict | None = None  # the threshold and how it was chosen (open protocol)
    # per query: its TOP_K best gallery matches as dataset rows ("rows", -1: none) and "score";
    # open protocol: "decision" too (an identity or "new")
    top: dict | None = None


def _retrieve(take: Callable, identities: np.ndarray, labels: torch.Tensor, query_rows: np.ndarray,
              gallery_rows: np.ndarray | None, keys: np.ndarray | None, top: int = TOP_K) -> tuple[dict, dict, dict]:
    """(retrieval summary, per-query lists, per-query arrays) of ``query_rows`` against
    ``gallery_rows`` (None: the queries themselves, each without itself). With ``top``, the
    summary's "top" holds each query's best ``top`` matches as dataset rows."""
    queries = take(query_rows)
    same = gallery_rows is None
    gallery_rows = query_rows if same else gallery_rows
    exclude = Exclusion(itself=same and keys is None)
    if keys is not None:
        exclude = Exclusion(query_keys=torch.from_numpy(keys[query_rows]),
                            gallery_keys=torch.from_numpy(keys[gallery_rows]))
    summary = retrieval_metrics(queries, labels[query_rows], queries if same else take(gallery_rows),
                                labels[gallery_rows], exclude, top=top)
    if top:
        index = summary["top"]["index"]
        summary["top"] = {"rows": np.where(index >= 0, np.asarray(gallery_rows)[index], -1),
                          "score": summary["top"]["score"]}
    lists, arrays = summary.pop("per_query"), summary.pop("outcomes")
    best = [None if i is None else str(identities[gallery_rows[i]]) for i in lists.pop("best_index")]
    lists["best_identity"] = best
    arrays.update(identity=identities[query_rows].astype(object), best_identity=np.array(best, dtype=object))
    return summary, lists, arrays


def score_closed(take: Callable, identities: np.ndarray, labels: torch.Tensor, split: Split, rows: dict,
                 keys: np.ndarray | None, warn: bool = True) -> Scored:
    """Disjoint (test images against each other) or closed (test images against training images)."""
    gallery = None if split.protocol == "disjoint" else rows["train"]
    summary, lists, arrays = _retrieve(take, identities, labels, rows["test"], gallery, keys)
    if warn and summary["unanswerable_queries"]:
        print(f"warning: {summary['unanswerable_queries']} test image(s) have no other image of their identity in "
              "the gallery (identities with a single image, or only same-day images under --exclude same-day); "
              "they are left out of the metrics and counted in metrics.unanswerable_queries", file=sys.stderr)
    top = summary.pop("top")
    return Scored({**summary, **registry.compute(arrays)}, lists, top=top)


def _known(identities: np.ndarray, query_rows: np.ndarray, gallery_rows: np.ndarray) -> np.ndarray:
    return np.isin(identities[query_rows], identities[gallery_rows])


def _usable(part: OpenSet, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.setdiff1d(part.gallery, bad), np.setdiff1d(part.queries, bad)


def score_open(take: Callable, identities: np.ndarray, labels: torch.Tensor, split: Split, rows: dict,
               keys: np.ndarray | None) -> Scored:
    """Open set: the threshold from the calibration set (training identities held out from
    training), then every test query answered with an identity or "new" and scored."""
    cal_gallery, cal_queries = _usable(split.calibration, rows["bad"])
    _, _, cal = _retrieve(take, identities, labels, cal_queries, cal_gallery, keys, top=0)
    threshold = choose_threshold(cal["best_score"], cal["best_identity"], cal["identity"],
                                 _known(identities, cal_queries, cal_gallery))
    gallery, queries = rows["gallery"], rows["test"]
    summary, lists, arrays = _retrieve(take, identities, labels, queries, gallery, keys)
    # known: the query's own gallery holds its animal. Under --exclude same-day an animal filmed on
    # one day only can lose every gallery image to the rule; for that query it is new, and "new" is
    # the right answer (a known label would make it unanswerable yet count it wrong)
    in_gallery = _known(identities, queries, gallery)
    known = in_gallery & ~np.isnan(arrays["first_rank"])
    summary["known_without_gallery_after_exclusion"] = int((in_gallery & ~known).sum())
    predicted = answer(arrays["best_score"], arrays["best_identity"], threshold.value)
    lists.update(known=known.tolist(), predicted=predicted)
    arrays.update(known=known, predicted=np.array(predicted, dtype=object))
    summary["new_queries"] = int((~known).sum())
    info = {"threshold": threshold.value if np.isfinite(threshold.value) else None,
            "chosen_on": "calibration open set from a validation split of the training identities (held out "
                         "from training; the inner split of --validate); no test image",
            "rule": RULE, "calibration_gmean": threshold.calibration_gmean,
            "calibration_baks": threshold.calibration_baks, "calibration_baus": threshold.calibration_baus,
            "calibration_images": int(len(cal_gallery) + len(cal_queries)),
            "calibration_identities": int(len(set(identities[np.concatenate([cal_gallery, cal_queries])]))),
            "gallery_images": int(len(gallery)), "new_identities": list(split.open.new_identities)}
    top = {**summary.pop("top"), "decision": np.array(predicted, dtype=object)}
    return Scored({**summary, **registry.compute(arrays)}, lists, info, top)


def needed_rows(split: Split, train_rows: np.ndarray, test_rows: np.ndarray, bad: np.ndarray) -> dict:
    """The rows each part of the evaluation reads (unreadable images dropped) and their union."""
    rows = {"train": train_rows, "test": test_rows, "bad": np.asarray(bad, dtype=np.int64)}
    parts = [test_rows] + ([train_rows] if split.protocol == "closed" else [])
    if split.open is not None:
        rows["gallery"] = np.setdiff1d(split.open.gallery, bad)
        parts += [rows["gallery"], *_usable(split.calibration, rows["bad"])]
    rows["all"] = np.unique(np.concatenate(parts))
    return rows


def table_lookup(rows: np.ndarray, vectors: torch.Tensor) -> Callable[[np.ndarray], torch.Tensor]:
    """``take(rows)`` over embeddings computed once for the sorted ``rows``."""
    def take(wanted: np.ndarray) -> torch.Tensor:
        return vectors[torch.from_numpy(np.searchsorted(rows, wanted))]

    return take


def score(take: Callable, identities: np.ndarray, split: Split, rows: dict, days: np.ndarray | None,
          rule: str | None, warn: bool = True) -> Scored:
    """The run's metrics under one gallery rule (``days``: each row's capture day, for same-day).
    ``warn=False`` for a re-scoring of the same queries (keypoint reliance): its warnings would
    repeat the run's own."""
    names = {name: i for i, name in enumerate(sorted(set(identities)))}
    labels = torch.tensor([names[x] for x in identities])
    keys = exclusion_keys(days, rule) if rule is not None else None
    if split.protocol == "open":
        return score_open(take, identities, labels, split, rows, keys)
    return score_closed(take, identities, labels, split, rows, keys, warn)


# Keypoint reliance: the same trained model evaluated again with its keypoints altered. Each
# variant's retrieval metrics go into the record's metrics as `<metric>_<variant>`, e.g.
# `top1_keypoints_removed` (every registered metric the run has: BAKS and BAUS too in the open
# set), scored under the record's own gallery rule.
RELIANCE_VARIANTS = ("keypoints_removed", "keypoints_shuffled")


def removed_points(points: torch.Tensor) -> torch.Tensor:
    """Every keypoint made NaN: token masks ignore NaN points, so no patch holds a keypoint and the
    keypoint embedding adds exactly nothing (the trained backbone is otherwise unchanged)."""
    return torch.full_like(points, float("nan"))


def shuffle_order(n: int, seed: int) -> np.ndarray:
    """``order[i]``: whose point set image i receives. A seeded random n-cycle, so for n >= 2 no
    image keeps its own set (a plain permutation would leave about one image unshuffled, diluting
    the effect by chance); n = 1 can only keep its own."""
    visit = np.random.default_rng(seed).permutation(n)
    order = np.empty(n, dtype=np.int64)
    order[visit] = np.roll(visit, -1)  # each image in the visiting order takes the next one's set
    return order


def shuffle_point_sets(points: torch.Tensor, rows: np.ndarray, seed: int) -> tuple[torch.Tensor, dict]:
    """``points`` with the whole point sets of ``rows`` (the evaluated images) permuted among them
    by ``shuffle_order``; other rows unchanged. Also says how many images kept their own set and
    how many received one equal to their own (a fixed template: shuffling it changes nothing)."""
    rows = np.asarray(rows, dtype=np.int64)
    order = shuffle_order(len(rows), seed)
    index = torch.from_numpy(rows)
    shuffled = points.clone()
    shuffled[index] = points[torch.from_numpy(rows[order])]
    before, after = points[index].flatten(1), shuffled[index].flatten(1)
    same = ((before == after) | (before.isnan() & after.isnan())).all(dim=1)
    info = {"seed": int(seed), "images": int(len(rows)),
            "own_set_kept": int((order == np.arange(len(rows))).sum()),
            "equal_set_received": int(same.sum())}
    return shuffled, info


def reliance_metrics(variants: dict[str, Scored]) -> dict:
    """``{variant: Scored}`` -> the record's extra metrics, ``<metric>_<variant>``."""
    return {f"{name}_{variant}": scored.metrics[name] for variant, scored in variants.items()
            for name in registry.defined() if name in scored.metrics}
