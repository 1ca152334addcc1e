"""The metrics registry: every metric a run reports is one registered ``Metric``.

A metric names the per-query fields it needs (columns of a record's ``queries``), computes one
outcome per query from them (NaN: the query does not count for this metric) and aggregates the
outcomes into one number, in percent. A record gets a value for every registered metric whose
fields its queries have (``compute``): closed-set retrieval records have ``first_rank`` and ``ap``
(top-1, top-5, mAP); open-set records also have ``known`` (the query's identity has gallery
images) and ``predicted`` (the identity answered, None for "a new individual"), which BAKS, BAUS,
their geometric mean and the new-individual AUROC need. Records written before a field existed
simply lack the metrics that need it.

Per-query fields (one list per field, one entry per query image):
- ``first_rank``: rank of the first correct gallery image (None: no correct image in its gallery)
- ``ap``: average precision (None as first_rank)
- ``best_score``: cosine similarity of the best-scoring gallery image (None: an empty gallery)
- ``best_identity``: that image's identity
- ``known`` / ``predicted``: open-set protocol only (see above)

BAKS and BAUS are wildlife-datasets' definitions (``wildlife_datasets.metrics.BAKS`` / ``BAUS``,
1.0.8): accuracy per true identity, averaged over identities (known queries / new-individual
queries). They are computed here in numpy from the per-query outcomes, so that intervals can
resample identities without re-running anything; the tests check them against wildlife-datasets'
functions. Add a metric: one ``@metric(...)``-decorated outcome function in this file, or in a
file on HARNESS_PLUGIN_PATH, or in a package behind the ``harness.metrics`` entry-point group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.registry import Registry, plugin_loader

# third-party metrics come from the ``harness.metrics`` entry-point group or HARNESS_PLUGIN_PATH
METRICS: Registry = Registry("metric", loader=plugin_loader("harness.metrics"))
ORDER: list[str] = []  # names in the order they are defined: the order records and summaries show them


@dataclass(frozen=True)
class Metric:
    """One metric: ``outcome(columns) -> (Q,) float`` (NaN = not counted) and
    ``aggregate(outcomes, columns) -> float`` (NaN when no query counts)."""

    name: str
    label: str  # how a summary line shows it
    description: str
    needs: tuple[str, ...]
    outcome: Callable[[dict], np.ndarray]
    aggregate: Callable[[np.ndarray, dict], float]

    def applies(self, columns: dict) -> bool:
        return all(name in columns for name in self.needs)

    def __call__(self, columns: dict) -> float:
        return float(self.aggregate(self.outcome(columns), columns))


def percent_mean(values: np.ndarray, columns: dict) -> float:
    """100 x the mean over the queries that count; NaN (a record's None) when none counts, e.g. a
    fold whose test animals were each filmed on one day only under the same-day rule: a 0 there
    would be averaged into a cell as if every query had failed."""
    counted = ~np.isnan(values)
    if not counted.any():
        return float("nan")
    return 100.0 * float(values[counted].sum()) / int(counted.sum())


def balanced(values: np.ndarray, identity: np.ndarray) -> float:
    """100 x the mean over identities of each identity's mean outcome (queries that count only)."""
    counted = ~np.isnan(values)
    if not counted.any():
        return float("nan")
    _, group = np.unique(identity[counted], return_inverse=True)
    per_identity = np.bincount(group, weights=values[counted]) / np.bincount(group)
    return 100.0 * float(per_identity.mean())


def balanced_by_identity(values: np.ndarray, columns: dict) -> float:
    return balanced(values, columns["identity"])


def metric(name: str, label: str, description: str, needs: tuple[str, ...],
           aggregate: Callable[[np.ndarray, dict], float] = percent_mean):
    """Register the decorated outcome function as the metric ``name``."""

    def add(outcome: Callable[[dict], np.ndarray]) -> Callable[[dict], np.ndarray]:
        METRICS.register(name, description, factory=Metric(name, label, description, tuple(needs), outcome, aggregate))
        ORDER.append(name)
        return outcome

    return add


def _hit_within(k: int) -> Callable[[dict], np.ndarray]:
    def outcome(q: dict) -> np.ndarray:
        rank = q["first_rank"]
        return np.where(np.isnan(rank), np.nan, (rank <= k).astype(float))

    return outcome


metric("top1", "top-1", "the best-scoring gallery image has the query's identity (%, the paper's metric)",
       ("first_rank",))(_hit_within(1))
metric("top5", "top-5", "a correct image among the 5 best-scoring gallery images (%)", ("first_rank",))(_hit_within(5))


@metric("mAP", "mAP", "mean average precision of the ranked gallery (%)", ("ap",))
def _average_precision(q: dict) -> np.ndarray:
    return q["ap"]


OPEN_FIELDS = ("identity", "known", "predicted")


def _correct(q: dict) -> np.ndarray:
    """Open-set answer right: the true identity for a known individual, "new" for a new one."""
    new_said = np.array([p is None for p in q["predicted"]])
    same = np.array([p is not None and p == t for p, t in zip(q["predicted"], q["identity"])])
    return np.where(q["known"], same, new_said).astype(float)


@metric("baks", "BAKS", "open set: balanced accuracy on known individuals, identity answered right (%, wildlife-datasets' BAKS)",
        OPEN_FIELDS, balanced_by_identity)
def _baks(q: dict) -> np.ndarray:
    return np.where(q["known"], _correct(q), np.nan)


@metric("baus", "BAUS", "open set: balanced accuracy on new individuals, answered \"new\" (%, wildlife-datasets' BAUS)",
        OPEN_FIELDS, balanced_by_identity)
def _baus(q: dict) -> np.ndarray:
    return np.where(q["known"], np.nan, _correct(q))


def _gmean(values: np.ndarray, q: dict) -> float:
    known = q["known"]
    baks = balanced(np.where(known, values, np.nan), q["identity"])
    baus = balanced(np.where(known, np.nan, values), q["identity"])
    return float(np.sqrt(baks * baus))


@metric("baks_baus_gmean", "sqrt(BAKS x BAUS)", "open set: sqrt(BAKS x BAUS) (%, AnimalCLEF 2025's score)", OPEN_FIELDS, _gmean)
def _open_correct(q: dict) -> np.ndarray:
    return _correct(q)


def auroc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """P(a positive scores above a negative) + half the ties (the Mann-Whitney form of the AUROC)."""
    if len(positive_scores) == 0 or len(negative_scores) == 0:
        return float("nan")
    order = np.sort(negative_scores)
    below = np.searchsorted(order, positive_scores, side="left")
    ties = np.searchsorted(order, positive_scores, side="right") - below
    return float((below + 0.5 * ties).sum()) / (len(positive_scores) * len(negative_scores))


def _new_auroc(values: np.ndarray, q: dict) -> float:
    counted = ~np.isnan(values)
    known = q["known"].astype(bool)
    # a known individual should score higher: "known" is the positive class of the best-match score
    return 100.0 * auroc(values[counted & known], values[counted & ~known])


@metric("new_auroc", "AUROC new", "open set: AUROC of known-vs-new by the best match's similarity (%)",
        ("known", "best_score"), _new_auroc)
def _best_score(q: dict) -> np.ndarray:
    return q["best_score"]


NUMERIC = ("first_rank", "ap", "best_score")


def columns(queries: dict) -> dict[str, np.ndarray]:
    """A record's ``queries`` (lists, None = missing) as arrays: numbers as float with NaN, ``known``
    as bool, identities as objects (``predicted`` keeps None for "new")."""
    out = {}
    for name, values in queries.items():
        if name in NUMERIC:
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        elif name == "known":
            out[name] = np.asarray(values, dtype=bool)
        else:
            out[name] = np.array(values, dtype=object)
    return out


def defined() -> list[str]:
    """Every metric's name in the order defined, plugins' included: reading the registry loads
    them (``ORDER`` alone would miss a plugin nothing has looked up yet)."""
    METRICS.names()
    return list(ORDER)


def compute(queries: dict) -> dict[str, float | None]:
    """Every registered metric that applies to these per-query columns (lists or arrays): name ->
    value, None where no query counts (e.g. BAUS without new individuals)."""
    cols = columns(queries)
    out: dict[str, float | None] = {}
    for name in defined():
        m: Metric = METRICS.get(name).factory
        if m.applies(cols):
            value = m(cols)
            out[m.name] = None if np.isnan(value) else value
    return out


def per_query(name: str, queries: dict) -> np.ndarray:
    """The per-query outcomes of metric ``name`` (NaN = not counted), e.g. for intervals."""
    return METRICS.get(name).factory.outcome(columns(queries))


def applicable(record: dict) -> list[str]:
    """The registered metrics a record has values for, in the order they are defined."""
    return [name for name in defined() if name in record.get("metrics", {})]
