"""Uncertainty: a cell's records over folds x seeds -> mean, spread, and a 95% confidence interval
from a bootstrap over test identities; two cells -> a paired difference with its interval.

The unit that varies between studies is the individual animal, not the image: images of one
individual are strongly correlated. So the bootstrap resamples test IDENTITIES with replacement
(a cluster bootstrap), each carrying all of its query images in every run:

- per run (one fold, one seed) a record keeps per-query outcomes: the rank of the first correct
  match and the average precision of each query image;
- per seed the runs' queries are pooled (the folds of one seed test every identity once); a cell's
  value is the mean over seeds of the pooled metric, e.g. top-1 = hits / answerable queries;
- a bootstrap replicate draws identities with replacement (multinomial weights) and recomputes
  that value; the 2.5th and 97.5th percentiles of ``BOOTSTRAP`` replicates are the 95% interval;
- a paired comparison of cells A and B uses the same replicate weights on both (identical folds,
  seeds and query images are required, else the pair is refused): the interval of A - B. When it
  covers 0 the difference is reported as not significant.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 2000  # replicates; the interval's end points move by ~0.1 points between seeds of the bootstrap
BOOTSTRAP_SEED = 0
METRICS = ("top1", "top5", "mAP")


@dataclass(frozen=True)
class Outcomes:
    """Per-query outcomes of one run: answerable queries only."""

    run: tuple  # (split fingerprint, seed): what pairs a run with the same run of another cell
    image_id: np.ndarray  # (Q,) str
    identity: np.ndarray  # (Q,) str
    first_rank: np.ndarray  # (Q,) int >= 1: rank of the first correct gallery image
    ap: np.ndarray  # (Q,) float in [0, 1]

    def scores(self, metric: str) -> np.ndarray:
        """Per-query value whose mean is the metric (in %)."""
        if metric == "top1":
            return 100.0 * (self.first_rank <= 1)
        if metric == "top5":
            return 100.0 * (self.first_rank <= 5)
        if metric == "mAP":
            return 100.0 * self.ap
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")


def outcomes_of(record: dict) -> Outcomes | None:
    """The per-query outcomes a record keeps, or None (records written before they were kept)."""
    queries = record.get("queries")
    if not queries:
        return None
    rank = np.array([np.nan if r is None else r for r in queries["first_rank"]], dtype=float)
    ok = np.isfinite(rank)
    return Outcomes(run=(record["split"]["fingerprint"], record["seed"]),
                    image_id=np.asarray(queries["image_id"], dtype=str)[ok],
                    identity=np.asarray(queries["identity"], dtype=str)[ok],
                    first_rank=rank[ok].astype(np.int64),
                    ap=np.asarray([np.nan if a is None else a for a in queries["ap"]], dtype=float)[ok])


@dataclass(frozen=True)
class Table:
    """Per-seed, per-identity sums: ``sums[s, i]`` of the metric's per-query scores and ``counts[s, i]``
    of queries of identity i in seed s (0 where that seed never tested it)."""

    identities: tuple[str, ...]
    seeds: tuple
    sums: np.ndarray
    counts: np.ndarray

    def value(self, weights: np.ndarray | None = None) -> np.ndarray:
        """The cell's value, or one per row of ``weights`` (B, identities): mean over seeds of the
        weighted pooled metric."""
        w = np.ones((1, len(self.identities))) if weights is None else np.atleast_2d(weights)
        counts = w @ self.counts.T  # (B, seeds); 0 where a replicate drew none of a seed's identities
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled = np.where(counts > 0, (w @ self.sums.T) / counts, np.nan)
        return np.nanmean(pooled, axis=1)  # a seed without data in a replicate is left out, not scored 0


def identity_table(runs: list[Outcomes], metric: str = "top1") -> Table:
    seeds = tuple(sorted({run.run[1] for run in runs}, key=str))
    identities = tuple(sorted({i for run in runs for i in run.identity}))
    col = {name: j for j, name in enumerate(identities)}
    sums = np.zeros((len(seeds), len(identities)))
    counts = np.zeros_like(sums)
    for run in runs:
        s = seeds.index(run.run[1])
        idx = np.array([col[i] for i in run.identity], dtype=np.int64)
        np.add.at(sums[s], idx, run.scores(metric))
        np.add.at(counts[s], idx, 1.0)
    return Table(identities, seeds, sums, counts)


def bootstrap_weights(n: int, replicates: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(replicates, n) multiplicities of n identities drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Summary:
    """A cell: its value (mean over seeds of the pooled metric), the spread of per-run values (sample
    std over folds x seeds), and the bootstrap 95% interval (None without per-query outcomes)."""

    mean: float
    spread: float | None
    ci: tuple[float, float] | None
    runs: int
    identities: int


def run_value(record: dict, metric: str) -> float:
    return float(record["metrics"][metric])


def summarize(records: list[dict], metric: str = "top1") -> Summary:
    values = [run_value(r, metric) for r in records]
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else None
    runs = [outcomes_of(r) for r in records]
    if not records or any(run is None for run in runs):  # older records: no interval
        return Summary(float(np.mean(values)) if values else float("nan"), spread, None, len(records), 0)
    table = identity_table(runs, metric)
    replicates = table.value(bootstrap_weights(len(table.identities)))
    return Summary(float(table.value()[0]), spread, interval(replicates), len(records), len(table.identities))


@dataclass(frozen=True)
class Paired:
    """A - B on identical runs: the mean difference and its paired bootstrap 95% interval; or why
    the two cannot be paired (``refused``)."""

    difference: float | None = None
    ci: tuple[float, float] | None = None
    runs: int = 0
    identities: int = 0
    refused: str | None = None

    @property
    def significant(self) -> bool:
        return self.ci is not None and not (self.ci[0] <= 0.0 <= self.ci[1])


def pairing_problem(a: list[Outcomes | None], b: list[Outcomes | None]) -> str | None:
    """Why records A and B cannot be paired, or None: both need per-query outcomes and the same
    runs (split fingerprint and seed) with the same query images."""
    if not a or not b:
        return "one side has no records"
    if any(run is None for run in a + b):
        return "records without per-query outcomes (written before they were kept)"
    runs_a, runs_b = {run.run: run for run in a}, {run.run: run for run in b}
    if len(runs_a) != len(a) or len(runs_b) != len(b):
        return "two records of one side share a split and seed"
    if set(runs_a) != set(runs_b):
        only = len(set(runs_a) ^ set(runs_b))
        return f"their folds or seeds differ ({only} run(s) on one side only)"
    for key, run in runs_a.items():
        if sorted(run.image_id) != sorted(runs_b[key].image_id):
            return "the same split and seed answered different query images"
    return None


def paired(a_records: list[dict], b_records: list[dict], metric: str = "top1") -> Paired:
    a = [outcomes_of(r) for r in a_records]
    b = [outcomes_of(r) for r in b_records]
    problem = pairing_problem(a, b)
    if problem:
        return Paired(refused=problem)
    ta, tb = identity_table(a, metric), identity_table(b, metric)
    weights = bootstrap_weights(len(ta.identities))
    diff = ta.value(weights) - tb.value(weights)
    return Paired(float(ta.value()[0] - tb.value()[0]), interval(diff), len(a), len(ta.identities))
