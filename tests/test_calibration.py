"""The intervals survive simulated studies whose truth is known (numpy only, seconds).

A study: 35 test animals from a population, 5 identity folds, S training seeds, two methods.
Per query, a hit with probability sigmoid(mu_m + u_i + v_mi + b_s + c_ms + g_fs + e_mfs):
u animal difficulty, v method x animal, b seed (one initialisation for every fold and method,
as the harness seeds), c method x seed (shared by all folds), g fold x seed (shared by the
methods), e the run's own noise. The magnitudes are of the order the small MacaqueFaces records
show (runs of one cell differ by ~2 top-1 points between seeds, animals by far more).
"""
import numpy as np
import pytest
from scipy import stats as sps

from harness.evaluation import statistics

FOLDS, ANIMALS, QUERIES = 5, 35, 180
SD = {"u": 1.0, "v": 0.1, "b": 0.08, "c": 0.04, "g": 0.07, "e": 0.03}
MU = {"A": 1.9, "B": 1.8}  # B is worse by ~1 top-1 point in the population


def _draw(rng, n, seeds, methods):
    """Per study, method, fold, seed: top-1 (%) over the fold's animals. -> {m: (n, F, S)}."""
    u = rng.normal(0, SD["u"], (n, ANIMALS))
    fold = np.arange(ANIMALS) % FOLDS  # 7 animals per fold (the animals are exchangeable)
    b = rng.normal(0, SD["b"], (n, 1, seeds))
    g = rng.normal(0, SD["g"], (n, FOLDS, seeds))
    out = {}
    for name, mu in methods.items():
        v = rng.normal(0, SD["v"], (n, ANIMALS))
        c = rng.normal(0, SD["c"], (n, 1, seeds))
        e = rng.normal(0, SD["e"], (n, FOLDS, seeds))
        run = b + c + g + e  # (n, F, S)
        logit = mu + (u + v)[:, :, None] + run[:, fold, :]  # (n, animals, S)
        hits = rng.binomial(QUERIES, 1 / (1 + np.exp(-logit)))
        per_fold = np.stack([hits[:, fold == f].sum(1) for f in range(FOLDS)], 1)
        out[name] = 100.0 * per_fold / (QUERIES * (fold == 0).sum())
    return out


def _truth(rng, mu_a, mu_b, n=2_000_000):
    """The population difference of expected top-1 (Monte Carlo over every random effect)."""
    total = np.sqrt(SD["u"] ** 2 + SD["v"] ** 2 + SD["b"] ** 2 + SD["c"] ** 2 + SD["g"] ** 2 + SD["e"] ** 2)
    z = rng.normal(0, total, n)
    return 100.0 * float(np.mean(1 / (1 + np.exp(-(mu_a + z))) - 1 / (1 + np.exp(-(mu_b + z)))))


def _ours(diff):
    est = statistics.fold_seed_estimate(statistics.Grid(tuple(range(diff.shape[0])), tuple(range(diff.shape[1])),
                                                        diff))
    return est.ci


def _fold_means_t(diff):
    means = diff.mean(1)
    half = sps.t.ppf(0.975, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means))
    return means.mean() - half, means.mean() + half


def _rate(intervals, truth):
    return float(np.mean([lo <= truth <= hi for lo, hi in intervals]))


@pytest.fixture(scope="module")
def studies():
    rng = np.random.default_rng(2026)
    n = 2000
    return {"paired": _draw(rng, n, 3, MU), "aa": _draw(rng, n, 4, {"A": MU["A"]}),
            "truth": _truth(rng, MU["A"], MU["B"]), "n": n}


def test_the_fold_seed_interval_covers_the_truth_and_passes_a_over_a(studies):
    diff = studies["paired"]["A"] - studies["paired"]["B"]
    coverage = _rate([_ours(d) for d in diff], studies["truth"])
    # measured 97.3% (Monte Carlo standard error 0.4): on the safe side, because the seed component
    # is estimated on S - 1 = 2 degrees of freedom and Satterthwaite's t is then wide
    assert 0.93 <= coverage <= 0.975, coverage
    aa = studies["aa"]["A"]
    aa_diff = aa[:, :, :2] - aa[:, :, 2:]  # seeds {0, 1} vs {2, 3}, paired by position
    false_alarms = 1 - _rate([_ours(d) for d in aa_diff], 0.0)
    assert false_alarms <= 0.07, false_alarms
    # the cell interval itself covers the population's expected top-1 of method A
    total = np.sqrt(sum(v ** 2 for v in SD.values()))
    z = np.random.default_rng(1).normal(0, total, 2_000_000)
    truth_a = 100.0 * float(np.mean(1 / (1 + np.exp(-(MU["A"] + z)))))
    cell = _rate([_ours(x) for x in studies["paired"]["A"]], truth_a)
    assert 0.93 <= cell <= 0.975, cell


def test_the_alternatives_fail_the_same_studies(studies):
    """The fold-means t-test misses the seed effect shared across folds; the identity-only view
    (animals resampled, each trained model fixed) misses training randomness altogether."""
    aa = studies["aa"]["A"]
    one_vs_one = aa[:, :, :1] - aa[:, :, 1:2]
    fold_t_alarms = 1 - _rate([_fold_means_t(d) for d in one_vs_one], 0.0)
    assert fold_t_alarms > 0.10, fold_t_alarms
    rng = np.random.default_rng(7)
    alarms = []
    for study in range(300):  # the bootstrap is slower: fewer studies are plenty to see it fail
        alarms.append(_identity_only_aa_significant(rng, study))
    assert np.mean(alarms) > 0.15, np.mean(alarms)


def _identity_only_aa_significant(rng, study):
    """One A/A study at the query level, judged by the harness's identity-only bootstrap."""
    u = rng.normal(0, SD["u"], ANIMALS)
    fold = np.arange(ANIMALS) % FOLDS
    records = []
    for seed in (0, 1):
        run = rng.normal(0, SD["b"]) + rng.normal(0, SD["g"], FOLDS) + rng.normal(0, SD["e"], FOLDS)
        p = 1 / (1 + np.exp(-(MU["A"] + u + run[fold])))
        hits = rng.random((ANIMALS, QUERIES)) < p[:, None]
        for f in range(FOLDS):
            rows = np.flatnonzero(fold == f)
            records.append({"seed": seed, "split": {"fingerprint": f"fold{f}"}, "metrics": {"top1": 0.0},
                            "queries": {"identity": np.repeat([f"id{i}" for i in rows], QUERIES).tolist(),
                                        "image_id": [f"{i}-{q}" for i in rows for q in range(QUERIES)],
                                        "first_rank": np.where(hits[rows].ravel(), 1, 2).tolist(),
                                        "ap": hits[rows].ravel().astype(float).tolist()}})
    a = [r for r in records if r["seed"] == 0]
    b = [{**r, "seed": 0} for r in records if r["seed"] == 1]
    _, (low, high) = statistics.identity_only_paired(a, b, replicates=300)
    return not (low <= 0.0 <= high)


def test_identity_only_contrast_takes_one_seed_a_side_and_skips_unpaired_sides():
    from harness.evaluation import statistics
    recs = [{"seed": s, "fold": f} for s in (0, 1, 2, 3) for f in (0, 1)]
    a, b = statistics.seed_groups(recs, per_side=1)
    assert {r["seed"] for r in a} == {0} and {r["seed"] for r in b} == {0} and len(b) == 2  # seed 1, relabelled
    a2, b2 = statistics.seed_groups(recs)
    assert {r["seed"] for r in a2} == {0, 1} and len(b2) == 4
