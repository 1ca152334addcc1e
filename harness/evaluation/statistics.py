"""Uncertainty: a cell's records over folds x seeds -> its mean and a 95% confidence interval that
covers BOTH sources of variation, which animals were tested and how training went; two cells on
the same folds and seeds -> a paired difference, its interval and p-value; a setting's
comparisons -> the design's minimum detectable effect (MDE) for any number of seeds.

The design of a table cell is a grid: identity folds (each tests other animals) x training seeds.
A seed fixes the initial weights, and the harness uses the same seed in every fold, so a lucky
initialisation lifts all folds of that seed together: folds and seeds are CROSSED random factors,

    x[f, s] = mu + a[f] + b[s] + e[f, s]     (fold effect, seed effect, their interaction)

whose grand mean has variance var(a)/F + var(b)/S + var(e)/(F S). A paired comparison A - B
applies the model to the per-run differences d[f, s] on identical folds and seeds: what both
methods share (the fold's animals, the seed's initialisation) cancels, and a, b are then the
method x fold and method x seed interactions.

Comparisons: variance ratios pooled over a setting, each comparison keeping its own residual.
The ratios r_F = var(a)/var(e) and r_S = var(b)/var(e) are fitted by REML over all of a
setting's distinct trained comparisons of one design (a data set under one optimizer) in one
metric, with the settings that run the same cells (harness/tables/collect.py's ``setting_pools``;
``fit_pool``; in a balanced grid the three sums of squares are independent scaled chi-squares, so the REML likelihood is exact and each
comparison's residual profiles out in closed form). Given the ratios, a comparison's residual
comes from all F S - 1 degrees of freedom, SS_F / (1 + S r_F) + SS_S / (1 + F r_S) + SS_E, and
(mean - mu) / se is a t on F S - 1 df (exact when the ratios are known). Why, with the evidence
(``tests/test_calibration.py``: 2,000 simulated studies of known truth; `harness calibrate` on
the records):
- the former interval took each comparison's variance from whichever of its own components came
  out positive, max(MS_F, MS_S, MS_E, MS_F + MS_S - MS_E) / FS, with Satterthwaite's df for that
  choice: with 2 seeds a side the seed term is picked with 1-1.5 df, and those never reject. It
  was safe and uncalibrated: coverage 97.3%, A/A 4.4% but A/A p-values piled up high (median
  0.55, Kolmogorov-Smirnov p < 1e-6), power 0.21 for the true 1.26 points; on the committed
  synthetic A/A 0 of 69 significant, median p 0.61, KS p < 0.001. It is kept as
  ``fold_seed_estimate``: a cell's interval (the fold component there is large and clearly
  positive), the guard's fallback, and the contrast in the test and in `harness calibrate`;
- pooled ratios (pools of 25 studies): coverage 95.4%, A/A 5.6%, median p 0.51, KS p 0.6, power
  0.41, half-width 1.41 against 2.12; on the committed synthetic A/A 1 of 69, median p 0.54, KS p
  0.54. Pools of 8 studies call 7.2% of A/A pairs significant (the ratios are then too uncertain),
  12: 6.2%, 16: 6.0%, 25: 5.6%: a pool needs ``MIN_POOL`` = 16 comparisons, else each comparison
  keeps its own components. The small records' ratios are about 0 (REML 0.00 and 0.00 over 28
  comparisons), as an independent review found (95% upper bounds 0.05 and 0.07);
- statsmodels' MixedLM (REML, crossed fold and seed variance components) fits one comparison at a
  time: on 200 studies its Wald interval covered 89.5% and called 11.5% of A/A pairs significant
  (91.5% and 8.5% with a t on F S - 1 df), because a grid of 10-20 runs puts the components on the
  boundary half the time and statsmodels gives no small-sample df. Fitting a setting's comparisons
  in one MixedLM pools the absolute components and ONE residual variance, but same-day and
  cross-day residuals differ about 4x: with half the pairs at 4x the residual it called 0% of the
  small-residual A/A pairs significant (median p 0.75) and 9% of the large ones; pooled ratios
  called 5% of each (10 pools of 20). ``test_the_pooled_reml_is_statsmodels_reml_on_one_grid``
  checks that this module's REML is MixedLM's on one grid.
The weak spot is a comparison with a real method x fold (or seed) interaction inside a pool that
has none. The guard: each comparison's own F tests for a fold and a seed effect beyond what the
pooled ratios allow; below ``GUARD`` (0.01; at 0.05 the wide fallback took so many null
comparisons that the A/A p-values failed the uniformity test, median 0.53, KS p 0.03) it falls
back to its own components and says so in its note. A comparison with a frozen side (a pretrained model against one trained from scratch:
its fold interaction is not what the trained pairs share) keeps its own components too.

No claim from zero variance: runs that all differ by the same amount (or a cell whose runs are all
equal) get no interval and ``NO_VARIANCE`` as the reason. A floor from the per-query binomial noise
was the alternative, but two models answering the same queries are correlated per query (two
identical models differ by exactly 0), so the independent-binomial floor would be a guess, not a
bound.

The MDE is a design figure, not a property of a finished comparison (computed from the same se it
only restated the interval's half-width): what a folds x seeds design detects with 80% power at
95%, from the pooled ratios and a table's residual, under the t's noncentral distribution
(``design_mde``, ``seeds_needed``). What a null comparison excludes is the region outside its
interval.

What an interval needs: at least 2 folds (else no identity variance), at least 2 seeds (else no
training variance) and at least ``MIN_IDENTITIES`` test identities; otherwise no interval and no
significance claim, with the reason.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import optimize, stats as sps

from . import metrics as registry

LEVEL = 0.95
POWER = 0.80  # of the minimum detectable effect
MIN_IDENTITIES = 10  # fewer test animals than this: an interval would describe those animals, not the species
BOOTSTRAP = 2000  # replicates of the identity-only bootstrap
GUARD = 0.01  # a comparison whose own F test for a fold or seed effect beyond its pool's is below this leaves it
MIN_POOL = 16  # comparisons a pool needs (fewer: each keeps its own components; module docstring)
RATIO_BOUND = 100.0  # upper bound of a fitted variance ratio (an optimiser's box, far beyond what records show)
MOST_SEEDS = 30  # the largest seed count a design answer searches
NO_VARIANCE = "every run gave the same value: no variance to estimate, so no claim"
BOOTSTRAP_SEED = 0  # measured: paired end points (small CKPE - ViT) moved by <= 0.08 over 10 bootstrap seeds


# --- the fold x seed grid ------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """Run values on a complete folds x seeds grid (``values[f, s]``); ``left_out`` counts the runs
    outside it (a sweep that has not finished)."""

    folds: tuple
    seeds: tuple
    values: np.ndarray
    left_out: int = 0


GRID_SEARCH_AXIS = 12  # subsets of the shorter axis grid_of tries: 2^12 take ~0.2 s; beyond, every fold


def _grid_order(grid: tuple, folds_all: tuple, seeds_all: tuple, trained: bool) -> tuple:
    """``grid_of``'s sort key for a candidate (folds, seeds), best first: one that carries an interval
    (>= 2 folds, and >= 2 seeds where training varies) first, then more runs, then more folds (new
    animals before new initialisations), then the earliest folds and seeds in sorted order."""
    folds, seeds = grid
    decided = len(folds) >= 2 and (len(seeds) >= 2 or not trained)
    return (not decided, -len(folds) * len(seeds), -len(folds),
            tuple(map(folds_all.index, folds)), tuple(map(seeds_all.index, seeds)))


def _candidate_grids(runs, folds_all: tuple, seeds_all: tuple):
    """Each subset of the shorter axis with everything of the other axis complete over it (``runs``
    needs only membership: a dict or a set of (fold, seed))."""
    if len(folds_all) > len(seeds_all):  # the same search with the axes swapped
        swapped = {(s, f) for f, s in runs}
        yield from ((folds, seeds) for seeds, folds in _candidate_grids(swapped, seeds_all, folds_all))
        return
    for size in range(1, len(folds_all) + 1):
        for folds in itertools.combinations(folds_all, size):
            yield folds, tuple(s for s in seeds_all if all((f, s) in runs for f in folds))


def grid_of(runs: dict, trained: bool = True) -> Grid:
    """``{(fold, seed): value}`` -> the best complete folds x seeds grid in it (``_grid_order``): a fold
    that some seeds lack costs the grid that fold, not those seeds, whenever that keeps a larger or
    the only decided grid. Exhaustive over the subsets of the shorter axis: the complete grid on a set
    of folds is those folds with every seed that has them all (and the other way round), and adding
    seeds never lowers the order, so no other grid can win. A complete grid is taken whole; one with
    both axes longer than ``GRID_SEARCH_AXIS`` takes every fold and the seeds complete over them."""
    folds_all = tuple(sorted({f for f, _ in runs}, key=str))
    seeds_all = tuple(sorted({s for _, s in runs}, key=str))
    if len(runs) == len(folds_all) * len(seeds_all) or min(len(folds_all), len(seeds_all)) > GRID_SEARCH_AXIS:
        folds, seeds = folds_all, tuple(s for s in seeds_all if all((f, s) in runs for f in folds_all))
    else:
        folds, seeds = min((g for g in _candidate_grids(runs, folds_all, seeds_all) if g[0] and g[1]),
                           key=lambda g: _grid_order(g, folds_all, seeds_all, trained))
    values = np.array([[runs[(f, s)] for s in seeds] for f in folds], dtype=float).reshape(len(folds), len(seeds))
    return Grid(folds, seeds, values, len(runs) - values.size)


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error, degrees of freedom and interval; ``why`` says why there is no
    interval (then se, df and ci are None)."""

    mean: float
    se: float | None = None
    df: float | None = None
    ci: tuple[float, float] | None = None
    why: str | None = None
    note: str | None = None  # how the interval was made (pooled ratios, or its own components and why)


def mean_squares(values: np.ndarray) -> tuple[float, float, float]:
    """(MS_F, MS_S, MS_E) of a complete two-way layout without replication (F >= 2, S >= 2)."""
    f, s = values.shape
    grand = values.mean()
    by_fold, by_seed = values.mean(1), values.mean(0)
    residual = values - by_fold[:, None] - by_seed[None, :] + grand
    return (s * float(((by_fold - grand) ** 2).sum()) / (f - 1), f * float(((by_seed - grand) ** 2).sum()) / (s - 1),
            float((residual ** 2).sum()) / ((f - 1) * (s - 1)))


def _variance_of_mean(values: np.ndarray) -> tuple[float, float]:
    """(estimated variance of the grand mean, Satterthwaite degrees of freedom) from the grid's own
    mean squares, the components clipped at zero (see ``fold_seed_estimate``)."""
    f, s = values.shape
    ms = mean_squares(values)
    dfs = (f - 1, s - 1, (f - 1) * (s - 1))
    options = [((1, 0, 0), ms[0]), ((0, 1, 0), ms[1]), ((0, 0, 1), ms[2]), ((1, 1, -1), ms[0] + ms[1] - ms[2])]
    coef, total = max(options, key=lambda o: o[1])  # = the components clipped at zero
    if total <= 0:
        return 0.0, float(dfs[2])
    denominator = sum((c * m) ** 2 / d for c, m, d in zip(coef, ms, dfs) if c)
    return total / (f * s), total ** 2 / denominator


def _design_problem(grid: Grid) -> str | None:
    if grid.values.size == 0:
        return "no complete folds x seeds grid"
    if len(grid.seeds) < 2:
        return "one seed: training variance not estimated"
    if len(grid.folds) < 2:
        return "one split: identity variance not estimated (use identity folds, --folds)"
    if np.ptp(grid.values) == 0:
        return NO_VARIANCE
    return None


def fold_seed_estimate(grid: Grid, level: float = LEVEL, trained: bool = True) -> Estimate:
    """The grid's grand mean and an interval from its OWN mean squares alone (the variance of the
    mean from whichever components come out positive, Satterthwaite's df for that choice), or why
    there is none. A cell's interval (where the fold component is large and clearly positive), the
    guard's fallback and the former interval of comparisons, which ``tests/test_calibration.py``
    and `harness calibrate` keep for contrast: on paired differences it is miscalibrated (module
    docstring). An untrained grid (a frozen model: every seed gives the same run) has no training
    variance to estimate: its folds are the units, a t interval on F - 1 degrees of freedom."""
    mean = float(grid.values.mean()) if grid.values.size else float("nan")
    if not trained and len(grid.folds) >= 2:
        if np.ptp(grid.values) == 0:
            return Estimate(mean, why=NO_VARIANCE)
        folds = grid.values.mean(1)
        se = float(folds.std(ddof=1) / np.sqrt(len(folds)))
        half = float(sps.t.ppf(0.5 + level / 2, len(folds) - 1)) * se
        return Estimate(mean, se, float(len(folds) - 1), (mean - half, mean + half), note="folds of a frozen model")
    problem = _design_problem(grid)
    if problem:
        return Estimate(mean, why=problem)
    variance, df = _variance_of_mean(grid.values)
    se = float(np.sqrt(variance))
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return Estimate(mean, se, float(df), (mean - half, mean + half), note="its own components")


# --- variance ratios pooled over a setting's comparisons ---------------------------------------------

def sums_of_squares(values: np.ndarray) -> np.ndarray:
    """Grids (..., F, S) -> (..., 3): SS_F, SS_S, SS_E of each two-way layout without replication."""
    f, s = values.shape[-2:]
    grand = values.mean((-2, -1), keepdims=True)
    by_fold, by_seed = values.mean(-1, keepdims=True), values.mean(-2, keepdims=True)
    return np.stack([s * ((by_fold - grand) ** 2).sum((-2, -1)), f * ((by_seed - grand) ** 2).sum((-2, -1)),
                     ((values - by_fold - by_seed + grand) ** 2).sum((-2, -1))], -1)


def pool_parts(grids: list[np.ndarray]) -> np.ndarray:
    """Rows (F, S, SS_F, SS_S, SS_E) of the grids that can inform a pool: 2 or more folds and seeds,
    and some variance (a grid of identical values has no residual to scale by)."""
    rows = [(g.shape[0], g.shape[1], *sums_of_squares(g)) for g in grids
            if g.ndim == 2 and min(g.shape) >= 2 and np.ptp(g) > 0]
    return np.array(rows, dtype=float).reshape(-1, 5)


def _scales(ratios, folds, seeds):
    """Expected mean squares over the residual variance: (1 + S fold ratio, 1 + F seed ratio)."""
    return 1 + seeds * ratios[0], 1 + folds * ratios[1]


def _own_residuals(ratios, parts: np.ndarray) -> np.ndarray:
    """Each comparison's REML residual variance given the ratios (closed form in a balanced grid);
    ratios may be arrays (..., 1) of candidates, giving (..., comparisons)."""
    f, s, ss = parts[:, 0], parts[:, 1], parts[:, 2:]
    scale_f, scale_s = _scales(ratios, f, s)
    return (ss[:, 0] / scale_f + ss[:, 1] / scale_s + ss[:, 2]) / (f * s - 1)


def _profile_deviance(ratios, parts: np.ndarray) -> np.ndarray:
    """-2 x the REML log-likelihood of the ratios, each comparison's residual profiled out. In a
    balanced grid the three sums of squares are independent scaled chi-squares, so this is exact."""
    f, s = parts[:, 0], parts[:, 1]
    scale_f, scale_s = _scales(ratios, f, s)
    return ((f - 1) * np.log(scale_f) + (s - 1) * np.log(scale_s)
            + (f * s - 1) * np.log(_own_residuals(ratios, parts))).sum(-1)


def _best_ratios(parts: np.ndarray) -> tuple[float, float]:
    """The deviance's minimum over ratios >= 0: a grid of candidates (0 and 1e-3 to ``RATIO_BOUND``),
    then Nelder-Mead from the best on square roots (so 0, where the records' ratios sit, is reached).
    Chosen over scipy's bounded L-BFGS-B, whose setulb took ~0.1 s a fit here: a simulation fits
    hundreds of pools."""
    candidates = np.concatenate([[0.0], np.logspace(-3, np.log10(RATIO_BOUND), 30)])
    fold, seed = (x.ravel()[:, None] for x in np.meshgrid(candidates, candidates, indexing="ij"))
    start = int(np.argmin(_profile_deviance((fold, seed), parts)))
    fit = optimize.minimize(lambda x: float(_profile_deviance(np.minimum(x ** 2, RATIO_BOUND), parts)),
                            np.sqrt([fold[start, 0], seed[start, 0]]), method="Nelder-Mead",
                            options={"xatol": 1e-4, "fatol": 1e-8})
    return tuple(float(r) for r in np.minimum(fit.x ** 2, RATIO_BOUND))


@dataclass(frozen=True)
class Pool:
    """Variance ratios to the residual, shared by a setting's comparisons (``fold`` = var(method x
    fold) / var(residual), ``seed`` likewise), and the pooled residual variance (points^2, a
    df-weighted mean of the comparisons' own): each comparison keeps its own residual."""

    fold: float
    seed: float
    comparisons: int
    residual: float

    def residual_of(self, grids: list[np.ndarray]) -> float | None:
        """The df-weighted residual variance of some grids (a table's), given these ratios."""
        parts = pool_parts(grids)
        if not len(parts):
            return None
        weights = parts[:, 0] * parts[:, 1] - 1
        return float((weights * _own_residuals((self.fold, self.seed), parts)).sum() / weights.sum())


def fit_pool(grids: list[np.ndarray], minimum: int = MIN_POOL) -> Pool | None:
    """REML estimates of the shared ratios (bounded at 0) over the grids, or None when fewer than
    ``minimum`` grids can inform them (too few to pool: each comparison then has its own interval)."""
    parts = pool_parts(grids)
    if len(parts) < minimum:
        return None
    ratios = _best_ratios(parts)
    weights = parts[:, 0] * parts[:, 1] - 1
    residual = float((weights * _own_residuals(ratios, parts)).sum() / weights.sum())
    return Pool(ratios[0], ratios[1], len(parts), residual)


def pooled_t(values: np.ndarray, pool: Pool) -> tuple[np.ndarray, ...]:
    """Grids (n, F, S) -> (mean, se, df, guard p) under the pool's ratios: each grid's residual from
    all its FS - 1 degrees of freedom, so the t has FS - 1; the guard p is the smaller of its own F
    tests for more fold or seed variance than the pool's ratios allow."""
    n, f, s = values.shape
    ss = sums_of_squares(values)
    scale_f, scale_s = _scales((pool.fold, pool.seed), f, s)
    residual = (ss[:, 0] / scale_f + ss[:, 1] / scale_s + ss[:, 2]) / (f * s - 1)
    se = np.sqrt(residual * (scale_f + scale_s - 1) / (f * s))
    df_e = (f - 1) * (s - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fold_f = ss[:, 0] / (f - 1) / (ss[:, 2] / df_e) / scale_f
        seed_f = ss[:, 1] / (s - 1) / (ss[:, 2] / df_e) / scale_s
    guard = np.fmin(sps.f.sf(fold_f, f - 1, df_e), sps.f.sf(seed_f, s - 1, df_e))
    return values.mean((1, 2)), se, np.full(n, float(f * s - 1)), np.nan_to_num(guard, nan=1.0)


def pooled_intervals(values: np.ndarray, pool: Pool, level: float = LEVEL) -> tuple[np.ndarray, ...]:
    """Grids (n, F, S) -> (mean, se, df, guard p), the pooled t where the guard passes (p >=
    ``GUARD``) and the grid's own components where it does not (vectorised: the simulation test
    judges thousands of studies with the code the leaderboard uses)."""
    mean, se, df, guard = pooled_t(values, pool)
    folds, seeds = tuple(range(values.shape[1])), tuple(range(values.shape[2]))
    for i in np.flatnonzero(guard < GUARD):
        own = fold_seed_estimate(Grid(folds, seeds, values[i]), level)
        se[i], df[i] = (own.se, own.df) if own.ci else (np.nan, np.nan)
    return mean, se, df, guard


def pooled_estimate(grid: Grid, pool: Pool | None, level: float = LEVEL) -> Estimate:
    """The comparison's interval under the pool's ratios, or, where its own F tests say it has more
    fold or seed variance than the pool (p < ``GUARD``) or there is no pool, its own components'
    interval (``fold_seed_estimate``), which says so in its ``note``."""
    problem = _design_problem(grid)
    if problem:
        return Estimate(float(grid.values.mean()) if grid.values.size else float("nan"), why=problem)
    if pool is None:
        return replace(fold_seed_estimate(grid, level), note=f"its own components (no pool of {MIN_POOL} or more "
                                                               "comparisons)")
    mean, se, df, guard = (float(x[0]) for x in pooled_intervals(grid.values[None], pool, level))
    if guard < GUARD:
        return replace(fold_seed_estimate(grid, level), note=f"its own components: its fold or seed effect exceeds "
                                                               f"the pool's (F test p = {guard:.3f})")
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return Estimate(mean, se, df, (mean - half, mean + half), note=f"pooled ratios ({pool.comparisons} comparisons)")


def design_mde(pool: Pool, residual: float, folds: int, seeds: int, level: float = LEVEL,
               power: float = POWER) -> float:
    """The smallest true difference a folds x seeds design detects with probability ``power`` in a
    two-sided test at ``level``: the pooled t (FS - 1 df) under its noncentral distribution, from
    the pool's ratios and a residual variance (a table's, in a setting)."""
    se = float(np.sqrt(residual * (seeds * pool.fold + folds * pool.seed + 1) / (folds * seeds)))
    df = folds * seeds - 1
    crit = float(sps.t.ppf(0.5 + level / 2, df))

    def shortfall(effect: float) -> float:
        nc = effect / se
        wrong_side = np.nan_to_num(sps.nct.cdf(-crit, df, nc))  # tiny; scipy's nct returns NaN in its far tail
        return float(sps.nct.sf(crit, df, nc) + wrong_side) - power

    return float(optimize.brentq(shortfall, 0.0, (crit + 10.0) * se))


def seeds_needed(target: float, pool: Pool, residual: float, folds: int, most: int = MOST_SEEDS) -> int | None:
    """The fewest seeds (2 or more) whose design MDE is at most ``target``; None beyond ``most``."""
    return next((s for s in range(2, most + 1) if design_mde(pool, residual, folds, s) <= target), None)


# --- records -> cells and comparisons --------------------------------------------------------------

def run_value(record: dict, metric: str) -> float:
    return float(record["metrics"][metric])


def run_values(records: list[dict], metric: str) -> dict:
    """``{(fold, seed): value}`` of the records that have a value for ``metric`` (an open-set metric
    is None where no query counted, e.g. BAUS of a fold without new individuals)."""
    return {run_key(r): run_value(r, metric) for r in records if r["metrics"].get(metric) is not None}


def trained(records: list[dict]) -> bool:
    """Whether any run trained (a frozen baseline's records have no per-epoch history)."""
    return any(r.get("history") for r in records) or not all("history" in r for r in records)


def run_key(record: dict) -> tuple:
    """(fold, seed): the split fingerprint names the fold (it hashes the train and test images)."""
    return record["split"]["fingerprint"], record["seed"]


def in_grid(records: list[dict], grid: Grid) -> list[dict]:
    """The records whose run is in ``grid`` (the animals and runs its estimate speaks for)."""
    keys = {(f, s) for f in grid.folds for s in grid.seeds}
    return [r for r in records if run_key(r) in keys]


def test_identities(records: list[dict]) -> int:
    """Distinct test animals over a cell's runs (from the per-query outcomes; else the split sizes of
    one seed's folds)."""
    names = {i for r in records for i in ((r.get("queries") or {}).get("identity") or [])}
    if names:
        return len(names)
    seeds: dict = {}
    for r in records:
        seeds.setdefault(r["seed"], {})[r["split"]["fingerprint"]] = r["split"].get("test_identities", 0)
    return max((sum(v.values()) for v in seeds.values()), default=0)


@dataclass(frozen=True)
class Summary:
    """A cell: mean over its folds x seeds grid, the spread of per-run values (sample sd), the
    interval (None, with ``why``, when the design cannot give one)."""

    mean: float
    spread: float | None
    ci: tuple[float, float] | None
    runs: int
    identities: int
    seeds: int = 0
    df: float | None = None
    why: str | None = None


def _identity_problem(count: int) -> str | None:
    return None if count >= MIN_IDENTITIES else f"{count} test identities (< {MIN_IDENTITIES}): no interval"


def summarize(records: list[dict], metric: str = "top1") -> Summary:
    runs = run_values(records, metric)
    values = list(runs.values())
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else None
    if not runs:
        return Summary(float("nan"), None, None, len(records), 0, why=f"no record has {metric}")
    grid = grid_of(runs, trained(records))
    estimate = fold_seed_estimate(grid, trained=trained(records))
    identities = test_identities(in_grid(records, grid))
    why = estimate.why or _identity_problem(identities)
    ci = None if why else estimate.ci
    return Summary(estimate.mean, spread, ci, len(records), identities, len(grid.seeds), estimate.df, why)


@dataclass(frozen=True)
class Paired:
    """A - B on identical folds and seeds: the mean difference, its interval and two-sided p-value;
    ``refused`` when the two cannot be paired, ``why`` when they can but the design gives no
    interval (then no significance claim); ``note`` how the interval was made."""

    difference: float | None = None
    ci: tuple[float, float] | None = None
    se: float | None = None
    df: float | None = None
    p: float | None = None
    runs: int = 0
    identities: int = 0
    refused: str | None = None
    why: str | None = None
    adjusted: bool | None = field(default=None)  # significant after Holm's correction (set per table)
    left_out: int = 0  # runs not in the paired grid: of one side only, or outside its complete grid
    note: str | None = None

    @property
    def significant(self) -> bool:
        return self.ci is not None and not (self.ci[0] <= 0.0 <= self.ci[1])

    @property
    def decided(self) -> bool:
        return self.ci is not None


def _expand_frozen(frozen: list[dict], other: list[dict]) -> list[dict]:
    """A frozen side (no training: its seed changes nothing) stands for every seed of the other side:
    its run of each fold, relabelled with each seed the other side ran on that fold."""
    by_fold = {r["split"]["fingerprint"]: r for r in frozen}
    return [{**by_fold[fold], "seed": seed} for fold, seed in sorted({run_key(r) for r in other}, key=str)
            if fold in by_fold]


def pairing_problem(a: list[dict], b: list[dict]) -> str | None:
    """Why records A and B cannot be paired, or None: some runs (split fingerprint and seed) in
    common, each answering the same query images on both sides where the records keep them. Runs
    of one side only are left out of the pairing (and counted), so a sweep that has run a seed for
    one cell and not yet for the other still pairs on what both have."""
    if not a or not b:
        return "one side has no records"
    runs_a, runs_b = {run_key(r): r for r in a}, {run_key(r): r for r in b}
    if len(runs_a) != len(a) or len(runs_b) != len(b):
        return "two records of one side share a split and seed"
    if not set(runs_a) & set(runs_b):
        return "their folds or seeds differ (no run in common)"
    for key in set(runs_a) & set(runs_b):
        qa, qb = (runs_a[key].get("queries") or {}).get("image_id"), (runs_b[key].get("queries") or {}).get("image_id")
        if qa is not None and qb is not None and sorted(qa) != sorted(qb):
            return "the same split and seed answered different query images"
    return None


def _pairable(a_records: list[dict], b_records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Both sides on common run keys: a frozen side expanded to the other side's seeds."""
    if trained(a_records) and not trained(b_records):
        return a_records, _expand_frozen(b_records, a_records)
    if trained(b_records) and not trained(a_records):
        return _expand_frozen(a_records, b_records), b_records
    return a_records, b_records


def difference_grid(a_records: list[dict], b_records: list[dict], metric: str = "top1") -> Grid:
    """The per-run differences A - B on the runs both sides have, as a folds x seeds grid."""
    a_records, b_records = _pairable(a_records, b_records)
    a_runs, b_runs = run_values(a_records, metric), run_values(b_records, metric)
    differences = {key: value - b_runs[key] for key, value in a_runs.items() if key in b_runs}
    return grid_of(differences, trained(a_records) or trained(b_records))


def pooled_with(a_records: list[dict], b_records: list[dict]) -> bool:
    """Whether a comparison belongs in (and is judged under) its setting's pool: both sides trained.
    A frozen side's fold x method interaction (a pretrained model against one trained from scratch)
    is not what the trained pairs share, so such a comparison keeps its own components."""
    return trained(a_records) and trained(b_records)


def paired(a_records: list[dict], b_records: list[dict], metric: str = "top1", level: float = LEVEL,
           pool: Pool | None = None) -> Paired:
    """A - B with the pooled interval where both sides trained and ``pool`` (the setting's ratios)
    is given, else the interval from the comparison's own components (``note`` says which)."""
    both_trained = pooled_with(a_records, b_records)
    a_records, b_records = _pairable(a_records, b_records)
    problem = pairing_problem(a_records, b_records)
    if problem:
        return Paired(refused=problem)
    a_runs, b_runs = run_values(a_records, metric), run_values(b_records, metric)
    grid = difference_grid(a_records, b_records, metric)
    left_out = len(set(a_runs) ^ set(b_runs)) + 2 * grid.left_out
    if both_trained:
        estimate = pooled_estimate(grid, pool, level)
    else:
        estimate = fold_seed_estimate(grid, level, trained=trained(a_records) or trained(b_records))
        estimate = replace(estimate, note=estimate.note and f"{estimate.note} (a frozen side: not pooled)")
    identities = test_identities(in_grid(a_records, grid))
    why = estimate.why or _identity_problem(identities)
    if why:
        return Paired(estimate.mean, runs=grid.values.size, identities=identities, why=why, left_out=left_out)
    p = float(2 * sps.t.sf(abs(estimate.mean) / estimate.se, estimate.df))
    return Paired(estimate.mean, estimate.ci, estimate.se, estimate.df, p, grid.values.size, identities,
                  left_out=left_out, note=estimate.note)


def twins_of(records: list[dict], metric: str, other: str) -> tuple[list[dict], list[dict]]:
    """The runs that measured ``other`` and their twins carrying it as ``metric``: paired, their
    difference is ``metric`` - ``other`` within each run."""
    runs = [r for r in records if other in r["metrics"]]
    return runs, [{**r, "metrics": {metric: run_value(r, other)}} for r in runs]


def within(records: list[dict], metric: str, other: str, level: float = LEVEL, pool: Pool | None = None) -> Paired:
    """``metric`` - ``other`` within the same runs (e.g. top-1 minus top-1 with the keypoints removed,
    both measured on one trained model), with the folds x seeds interval of that per-run gap
    (pooled over ``pool``: the setting's gaps of this kind)."""
    runs, twins = twins_of(records, metric, other)
    if not runs:
        return Paired(refused=f"no record has {other}")
    return paired(runs, twins, metric, level, pool)


def holm(pairs: list[Paired], level: float = LEVEL) -> list[Paired]:
    """Holm's step-down correction over a family of comparisons (family-wise error at 1 - level);
    chosen over Benjamini-Hochberg because a table's few comparisons each make a claim of their own.
    Undecided pairs stay undecided (adjusted None)."""
    alpha = 1 - level
    order = sorted((i for i, p in enumerate(pairs) if p.p is not None), key=lambda i: pairs[i].p)
    out = list(pairs)
    rejecting = True
    for rank, i in enumerate(order):
        rejecting = rejecting and pairs[i].p <= alpha / (len(order) - rank)
        out[i] = replace(pairs[i], adjusted=rejecting)
    return out


# --- A/A calibration -------------------------------------------------------------------------------

def seed_groups(records: list[dict], per_side: int | None = None) -> tuple[list[dict], list[dict]] | str:
    """A cell's records split into two disjoint seed groups, B's seeds relabelled as A's, so that
    A - B is the configuration compared with itself; or why the cell cannot give such a pair.
    ``per_side``: the seeds on each side, the lowest first (the identity-only contrast takes 1);
    by default each side gets half of the cell's sorted seeds and needs at least 2 of them (a seed
    variance to estimate)."""
    seeds = sorted({r["seed"] for r in records}, key=str)
    need = per_side or 2
    half = len(seeds) // 2 if per_side is None else min(per_side, len(seeds) // 2)
    if half < need:
        return f"{len(seeds)} seed(s): an A/A pair needs {need} seed(s) per side"
    side_a, side_b = seeds[:half], seeds[half : 2 * half]
    relabel = dict(zip(side_b, side_a))
    a = [r for r in records if r["seed"] in side_a]
    b = [{**r, "seed": relabel[r["seed"]]} for r in records if r["seed"] in side_b]
    return a, b


@dataclass(frozen=True)
class Calibration:
    significant: int
    decided: int
    undecided: dict  # reason -> count of cells
    p_values: tuple = ()  # of the decided pairs
    method: str = ""  # the interval judged: pooled ratios, or each pair's own components

    def line(self, level: float = LEVEL) -> str:
        if not self.decided:
            reasons = "; ".join(f"{n} cell(s): {why}" for why, n in sorted(self.undecided.items()))
            return f"A/A: no decidable pair ({reasons or 'no cell with records'})"
        low, high = sps.binomtest(self.significant, self.decided).proportion_ci(level)
        rate = self.significant / self.decided
        method = f" ({self.method})" if self.method else ""
        return (f"A/A{method}: {self.significant} of {self.decided} significant at {level:.0%} (rate {rate:.1%}, "
                f"binomial {level:.0%} CI [{low:.1%}, {high:.1%}]){self._spread()}")

    def _spread(self) -> str:
        """The count says whether there are too many false alarms; the p-values also show too few
        (a calibrated test's A/A p-values are uniform; piled up high, its intervals are wider than
        they need be). Said from 10 pairs on. The pairs of one folder share folds and seeds, so they
        are not independent and the test is approximate."""
        if len(self.p_values) < 10:
            return ""
        ks = sps.kstest(self.p_values, "uniform")
        return (f"; p-values median {np.median(self.p_values):.2f} (calibrated: 0.50), uniform by Kolmogorov-Smirnov "
                f"p = {ks.pvalue:.3f} (approximate: the pairs share folds and seeds)")


def calibrate(cells: list[list[dict]], metric: str = "top1", pooled: bool = True) -> Calibration:
    """A/A pairs (``seed_groups``) of the cells, judged by the pooled interval (ratios fitted over
    these pairs) or, ``pooled=False``, by each pair's own components (the former interval)."""
    splits = [seed_groups(records) for records in cells]
    pairs = [split for split in splits if not isinstance(split, str)]
    pool = fit_pool([difference_grid(a, b, metric).values for a, b in pairs if pooled_with(a, b)]) if pooled else None
    method = (f"pooled ratios over {pool.comparisons} pairs" if pool else
              f"each pair's own components{' (too few pairs to pool)' if pooled else ''}")
    significant = decided = 0
    undecided: dict = {}
    p_values = []
    for split in splits:
        pair = Paired(why=split) if isinstance(split, str) else paired(*split, metric, pool=pool)
        reason = pair.refused or pair.why
        if reason:
            undecided[reason] = undecided.get(reason, 0) + 1
            continue
        decided += 1
        significant += pair.significant
        p_values.append(pair.p)
    return Calibration(significant, decided, undecided, tuple(p_values), method)


# --- the identity-only bootstrap: kept to show what it misses ----------------------------------------

def pooled_metrics() -> list[str]:
    """The metrics whose value is the mean of their per-query outcomes (top-1, top-5, mAP): the only
    kind the identity-only bootstrap can pool over resampled animals (BAKS and the like are balanced
    per identity, the AUROC ranks queries against each other)."""
    return [m for m in registry.defined() if registry.METRICS.get(m).factory.aggregate is registry.percent_mean]


def pooled_metric(name: str) -> registry.Metric:
    chosen = registry.METRICS.get(name).factory
    if chosen.aggregate is not registry.percent_mean:
        raise ValueError(f"the identity-only bootstrap pools per-query means; {name!r} is not one "
                         f"(valid: {', '.join(pooled_metrics())})")
    return chosen


@dataclass(frozen=True)
class Outcomes:
    """Per-query outcomes of one run: the record's per-query columns as arrays."""

    run: tuple  # (split fingerprint, seed)
    columns: dict

    def scores(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(identities, values in %) of the queries that count for ``metric``; the values' mean is
        the record's metric."""
        values = pooled_metric(metric).outcome(self.columns)
        counted = ~np.isnan(values)
        return self.columns["identity"][counted].astype(str), 100.0 * values[counted]


def outcomes_of(record: dict) -> Outcomes | None:
    """The per-query outcomes a record keeps, or None (records written before they were kept)."""
    queries = record.get("queries")
    if not queries:
        return None
    return Outcomes(run=run_key(record), columns=registry.columns(queries))


def identity_sums(runs: list[Outcomes], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(sums, counts), each (seeds, identities): per seed and identity, the summed per-query scores
    and the number of queries (0 where that seed never tested it)."""
    scored = [(run.run[1], *run.scores(metric)) for run in runs]
    seeds = sorted({seed for seed, _, _ in scored}, key=str)
    identities = sorted({i for _, ids, _ in scored for i in ids})
    col = {name: j for j, name in enumerate(identities)}
    sums = np.zeros((len(seeds), len(identities)))
    counts = np.zeros_like(sums)
    for seed, ids, values in scored:
        idx = np.array([col[i] for i in ids], dtype=np.int64)
        np.add.at(sums[seeds.index(seed)], idx, values)
        np.add.at(counts[seeds.index(seed)], idx, 1.0)
    return sums, counts


def pooled_value(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of ``weights`` (B, identities): the mean over seeds of the weighted pooled metric (a
    seed none of whose identities a replicate drew is left out, not scored 0)."""
    n = weights @ counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.where(n > 0, (weights @ sums.T) / n, np.nan)
    return np.nanmean(pooled, axis=1)


def bootstrap_weights(n: int, replicates: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(replicates, n) multiplicities of n identities drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def identity_only_paired(a_records: list[dict], b_records: list[dict], metric: str = "top1",
                         replicates: int = BOOTSTRAP) -> tuple[float, tuple[float, float]] | None:
    """The paired identity bootstrap this harness used before (resamples test animals, treats each
    trained model as fixed): (difference, interval), or None without per-query outcomes."""
    a, b = [outcomes_of(r) for r in a_records], [outcomes_of(r) for r in b_records]
    if any(run is None for run in a + b) or pairing_problem(a_records, b_records):
        return None
    sa, ca = identity_sums(a, metric)
    sb, cb = identity_sums(b, metric)
    if sa.shape[1] != sb.shape[1]:  # the sides tested other animals (an unfinished seed): not paired
        return None
    weights = np.vstack([np.ones(sa.shape[1]), bootstrap_weights(sa.shape[1], replicates)])
    diff = pooled_value(sa, ca, weights) - pooled_value(sb, cb, weights)
    return float(diff[0]), percentile_interval(diff[1:])
