"""Identity folds, per-query records, intervals over folds x seeds and paired comparisons."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from harness.config import RunConfig
from harness.core.errors import ResultsError
from harness.tables.collect import records_of
from harness.data.splits import HeldOut, identity_folds, make_split
from harness.evaluation import statistics
from harness.evaluation.retrieval import Exclusion, retrieval_metrics


def frame(identities: int, images: int) -> pd.DataFrame:
    rows = [(f"{i}-{j}", f"id{i:02d}", f"id{i:02d}/{j}.png") for i in range(identities) for j in range(images)]
    return pd.DataFrame(rows, columns=["image_id", "identity", "path"])


def test_identity_folds_test_every_identity_once_and_are_reproducible():
    df = frame(23, 4)
    folds = identity_folds(df, 5, seed=666)
    tested = [set(df["identity"].iloc[test]) for _, test in folds]
    assert sum(len(t) for t in tested) == 23 and set().union(*tested) == set(df["identity"])  # each once
    for (train, test), ids in zip(folds, tested):
        assert not ids & set(df["identity"].iloc[train])  # identity-disjoint
        assert len(train) + len(test) == len(df)
    assert [len(t) for t in tested] in ([5, 5, 5, 4, 4], [4, 4, 5, 5, 5]) or sorted(len(t) for t in tested) == [4, 4, 5, 5, 5]
    again = identity_folds(df.sample(frac=1.0, random_state=0).sort_index(), 5, seed=666)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))  # reproducible from the seed
    other = identity_folds(df, 5, seed=1)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, other))  # the seed matters
    # the same fold for every method: the split depends on the data and the seed only
    split = make_split(df, "disjoint", 666, dataset="x:1", held_out=HeldOut(folds=5, fold=2))
    assert np.array_equal(split.test, folds[2][1])
    assert split.fingerprint != make_split(df, "disjoint", 666, dataset="y:1", held_out=HeldOut(folds=5, fold=2)).fingerprint
    with pytest.raises(ValueError, match="--folds must be >= 2"):
        RunConfig(folds=1)
    with pytest.raises(ValueError, match="needs --protocol disjoint"):
        RunConfig(folds=5, protocol="closed")
    with pytest.raises(ValueError, match="--fold 5 needs --folds K"):
        RunConfig(folds=5, fold=5)


def test_pessimistic_ties_and_per_query_outcomes():
    # query 0: its positive (2) ties with a negative (1) -> ranked below it; query 3 has no positive
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 2])
    gallery = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    gallery_labels = torch.tensor([3, 1, 0])
    m = retrieval_metrics(emb[:1], labels[:1], gallery, gallery_labels)
    assert m["tied_queries"] == 1 and m["top1"] == 0.0  # a tie is never resolved in the query's favour
    assert m["per_query"]["first_rank"] == [3]  # gallery 0 above, gallery 1 tied: rank 3
    full = retrieval_metrics(emb, labels, emb, labels, Exclusion(itself=True))
    assert full["per_query"]["first_rank"][3] is None and full["unanswerable_queries"] == 2
    assert full["chance_top1"] == pytest.approx(100 * 1 / 3)  # one positive among three others


def test_per_query_outcomes_round_trip_to_the_metrics(run_record):
    rec = run_record
    runs = statistics.outcomes_of(rec)
    assert runs is not None and len(runs.scores("top1")[0]) == rec["metrics"]["queries"]
    assert runs.scores("top1")[1].mean() == pytest.approx(rec["metrics"]["top1"])
    assert runs.scores("top5")[1].mean() == pytest.approx(rec["metrics"]["top5"])
    assert runs.scores("mAP")[1].mean() == pytest.approx(rec["metrics"]["mAP"], abs=1e-3)
    assert statistics.pooled_metrics()[:3] == ["top1", "top5", "mAP"]
    with pytest.raises(ValueError, match="pools per-query means; 'baks' is not one"):
        runs.scores("baks")
    assert {"image_id", "identity", "first_rank", "ap"} <= set(rec["queries"])
    assert json.loads(json.dumps(rec))["queries"] == rec["queries"]


def _run(value, fold, seed, identities=12, config=None):
    """A record of one (fold, seed) run: its value and its fold's test identities."""
    names = [f"f{fold}-i{k}" for k in range(identities)]
    return {"split": {"fingerprint": f"fold{fold}", "test_identities": identities}, "seed": seed,
            "metrics": {"top1": float(value)}, "config": config or {},
            "queries": {"image_id": [f"{n}-q" for n in names], "identity": names, "first_rank": [1] * identities,
                        "ap": [1.0] * identities}}


def _grid_records(values, identities=12):
    return [_run(v, f, s, identities) for f, row in enumerate(values) for s, v in enumerate(row)]


def test_the_fold_seed_interval_on_a_hand_computed_grid():
    # fold means 81, 86, 91; seed means 84.67, 87.33; grand 86: MS_F = 50, MS_S = 10.67, MS_E = 0.667,
    # var(mean) = (50 + 10.67 - 0.667) / 6 = 10, Satterthwaite df = 60^2 / (50^2/2 + 10.67^2/1 + 0.667^2/2)
    values = [[80, 82], [84, 88], [90, 92]]
    ms = statistics.mean_squares(np.array(values, dtype=float))
    assert ms == pytest.approx((50.0, 32 / 3, 2 / 3))
    summary = statistics.summarize(_grid_records(values))
    df = 3600 / (50 ** 2 / 2 + (32 / 3) ** 2 + (2 / 3) ** 2 / 2)
    half = sps.t.ppf(0.975, df) * np.sqrt(10.0)
    assert summary.mean == pytest.approx(86.0) and summary.df == pytest.approx(df)
    assert summary.ci == pytest.approx((86.0 - half, 86.0 + half))
    assert summary.identities == 36 and summary.seeds == 2 and summary.why is None


def test_one_seed_one_split_or_few_animals_give_no_interval_and_no_claim():
    one_seed = statistics.summarize(_grid_records([[80], [84], [90]]))
    assert one_seed.ci is None and one_seed.why == "one seed: training variance not estimated"
    one_split = statistics.summarize(_grid_records([[80, 82]]))
    assert one_split.ci is None and "one split" in one_split.why
    few = statistics.summarize(_grid_records([[80, 82], [84, 88]], identities=4))
    assert few.ci is None and few.why == "8 test identities (< 10): no interval"
    a, b = _grid_records([[80], [84], [90]]), _grid_records([[70], [74], [80]])
    pair = statistics.paired(a, b)  # 10 points better in every fold, but one seed: no claim
    assert pair.difference == pytest.approx(10.0) and not pair.significant and not pair.decided
    assert pair.why == "one seed: training variance not estimated"


def test_paired_difference_and_refusals():
    a = _grid_records([[80, 83], [84, 86], [90, 91]])
    b = _grid_records([[78, 80], [83, 83], [87, 89]])  # differences 2, 3, 1, 3, 3, 2
    pair = statistics.paired(a, b)  # no pool: the grid's own components, and it says so
    d = np.array([[2.0, 3.0], [1.0, 3.0], [3.0, 2.0]])
    expected = statistics.fold_seed_estimate(statistics.Grid((0, 1, 2), (0, 1), d))
    assert pair.difference == pytest.approx(14 / 6) and pair.ci == pytest.approx(expected.ci)
    assert pair.note == "its own components (no pool of 16 or more comparisons)"
    assert pair.p == pytest.approx(2 * sps.t.sf(pair.difference / pair.se, pair.df))
    assert "folds or seeds differ" in statistics.paired(a, [{**r, "seed": r["seed"] + 5} for r in b]).refused
    moved = [{**r, "queries": {**r["queries"], "image_id": ["x"] * 12}} for r in b]
    assert "different query images" in statistics.paired(a, moved).refused


def test_under_a_pool_the_interval_is_a_t_on_folds_x_seeds_minus_one():
    # ratios 0: every one of the 6 runs' deviations counts toward the residual, var(mean) = SS / 5 / 6
    a = _grid_records([[80, 83], [84, 86], [90, 91]])
    b = _grid_records([[78, 80], [83, 83], [87, 89]])
    d = np.array([[2.0, 3.0], [1.0, 3.0], [3.0, 2.0]])
    pool = statistics.Pool(fold=0.0, seed=0.0, comparisons=20, residual=1.0)
    pair = statistics.paired(a, b, pool=pool)
    se = np.sqrt(((d - d.mean()) ** 2).sum() / 5 / 6)
    half = sps.t.ppf(0.975, 5) * se
    assert pair.df == 5 and pair.se == pytest.approx(se) and pair.ci == pytest.approx((d.mean() - half, d.mean() + half))
    assert pair.note == "pooled ratios (20 comparisons)" and pair.significant
    # a fold ratio of 1 at S = 2: the fold sum of squares is scaled by 1 + S = 3, var(mean) by (1 + 2) / 6
    ss = statistics.sums_of_squares(d)
    wider = statistics.paired(a, b, pool=statistics.Pool(fold=1.0, seed=0.0, comparisons=20, residual=1.0))
    assert wider.se == pytest.approx(np.sqrt((ss[0] / 3 + ss[1] + ss[2]) / 5 * 3 / 6))


def test_the_pooled_reml_is_statsmodels_reml_on_one_grid():
    """On one comparison the pooled REML is the ordinary two-way crossed REML: its ratios equal
    statsmodels MixedLM's variance components over its scale."""
    import pandas as pd
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(11)
    values = rng.normal(0, 1, (6, 4)) + rng.normal(0, 1.5, (6, 1)) + rng.normal(0, 1.0, (1, 4))
    pool = statistics.fit_pool([values], minimum=1)
    data = pd.DataFrame({"y": values.ravel(), "fold": np.repeat(np.arange(6), 4), "seed": np.tile(np.arange(4), 6),
                         "all": 1})
    fit = smf.mixedlm("y ~ 1", data, groups="all", re_formula="0",
                      vc_formula={"fold": "0 + C(fold)", "seed": "0 + C(seed)"}).fit(reml=True)
    ratios = dict(zip(fit.model.exog_vc.names, fit.vcomp / fit.scale))
    assert pool.fold == pytest.approx(ratios["fold"], rel=2e-3) and pool.seed == pytest.approx(ratios["seed"], rel=2e-3)
    assert pool.residual == pytest.approx(fit.scale, rel=2e-3)


def test_runs_that_all_differ_by_the_same_amount_make_no_claim():
    a = _grid_records([[80, 83], [84, 86], [90, 91]])
    b = [{**r, "metrics": {"top1": r["metrics"]["top1"] - 1.5}} for r in a]
    pool = statistics.Pool(fold=0.0, seed=0.0, comparisons=20, residual=1.0)
    for pair in (statistics.paired(a, b), statistics.paired(a, b, pool=pool)):
        assert pair.difference == pytest.approx(1.5) and not pair.decided and not pair.significant
        assert pair.why == statistics.NO_VARIANCE and pair.p is None


def test_holm_is_stricter_than_the_unadjusted_decision():
    pairs = [statistics.Paired(difference=1.0, ci=(0.1, 2.0), p=p) for p in (0.01, 0.04, 0.03)]
    pairs.append(statistics.Paired(difference=0.5, why="one seed: training variance not estimated"))
    adjusted = statistics.holm(pairs)
    # sorted 0.01 <= 0.05/3 passes; 0.03 > 0.05/2 stops the step-down: only the first survives
    assert [p.adjusted for p in adjusted] == [True, False, False, None]
    assert all(p.significant for p in adjusted[:3])


def test_a_over_a_pairs_need_two_seeds_per_side():
    rng = np.random.default_rng(0)
    four = _grid_records([[80 + f, 81 + f + f % 2, 81 + f, 80 + f + f % 2] for f in range(5)])  # A - B averages 0
    a, b = statistics.seed_groups(four)
    assert sorted({r["seed"] for r in a}) == [0, 1] == sorted({r["seed"] for r in b})
    assert {r["metrics"]["top1"] for r in b} == {r["metrics"]["top1"] for r in four if r["seed"] >= 2}
    two = _grid_records(80 + rng.normal(0, 1, (5, 2)))
    assert statistics.seed_groups(two) == "2 seed(s): an A/A pair needs 2 seed(s) per side"
    shifted = [{**r, "metrics": {"top1": r["metrics"]["top1"] + (30.0 if r["seed"] >= 2 else 0.0)}} for r in four]
    result = statistics.calibrate([four, shifted, two])
    assert (result.decided, result.significant) == (2, 1)
    assert result.undecided == {"2 seed(s): an A/A pair needs 2 seed(s) per side": 1}
    assert result.line().startswith("A/A (each pair's own components (too few pairs to pool)): 1 of 2 significant at "
                                    "95% (rate 50.0%, binomial 95% CI [1.3%, 98.7%])")
    assert "p-values" not in result.line()  # too few pairs to say how they spread


def test_the_a_over_a_line_shows_p_values_piled_up_high():
    spread = statistics.Calibration(0, 20, {}, tuple(np.linspace(0.025, 0.975, 20)))
    assert spread.line().endswith("p-values median 0.50 (calibrated: 0.50), uniform by Kolmogorov-Smirnov p = 1.000 "
                                  "(approximate: the pairs share folds and seeds)")
    high = statistics.Calibration(0, 20, {}, tuple(np.linspace(0.5, 0.99, 20)))
    assert "median 0.74" in high.line() and "Kolmogorov-Smirnov p = 0.000" in high.line()


def test_compare_refuses_a_folder_that_mixes_protocols_or_fold_counts(tmp_path):
    for protocol, folds in (("disjoint", 5), ("disjoint", 3)):
        cfg = RunConfig(method="vit", dataset="synthetic", protocol=protocol, folds=folds, fold=0)
        rec = {**_run(80.0, 0, 0, config=cfg.to_dict()), "schema": 2, "name": f"vit_{folds}", "protocol": protocol,
               "keypoints": None, "history": [], "wall_time_s": 1.0, "device": {}, "versions": {}, "git": {},
               "created": "2026-12-01T00:00:00+00:00"}
        (tmp_path / f"vit_{folds}.json").write_text(json.dumps(rec))
    with pytest.raises(ResultsError, match="mix protocols, split seeds or fold counts"):
        records_of(str(tmp_path), tmp_path)


def test_accumulation_and_compile_do_not_change_the_experiment():
    base = RunConfig(batch_size=64)
    assert RunConfig(batch_size=64, accumulate=4, compile="inductor").experiment_hash() == base.experiment_hash()
    assert RunConfig(batch_size=32).experiment_hash() != base.experiment_hash()


def test_a_gap_within_the_same_runs_gets_the_folds_x_seeds_interval():
    # top-1 minus top-1 with the keypoints removed, on the same trained models: 2 points in seed 0, 2.5 in
    # seed 1, in every fold: MS_F = MS_E = 0, MS_S = 5 * 2 * 0.25^2 = 0.625, se = sqrt(0.625 / 10), df = 1
    recs = [{**_run(80 + f + s, f, s), "metrics": {"top1": 80.0 + f + s, "top1_keypoints_removed": 78.0 + f + 0.5 * s}}
            for f in range(5) for s in range(2)]
    gap = statistics.within(recs, "top1", "top1_keypoints_removed")
    half = sps.t.ppf(0.975, 1) * 0.25
    assert gap.difference == pytest.approx(2.25) and gap.df == pytest.approx(1.0)
    assert gap.ci == pytest.approx((2.25 - half, 2.25 + half)) and not gap.significant
    assert "no record has" in statistics.within([_run(80, 0, 0)], "top1", "top1_keypoints_removed").refused


def test_a_seed_one_side_has_and_the_other_not_yet_is_left_out_and_counted():
    a = _grid_records([[80, 83, 85], [84, 86, 88], [90, 91, 93]])  # a third seed already ran for A
    b = _grid_records([[78, 80], [83, 83], [87, 89]])
    pair = statistics.paired(a, b)
    assert pair.left_out == 3 and pair.runs == 6
    assert pair.difference == pytest.approx(statistics.paired(a[:2] + a[3:5] + a[6:8], b).difference)


def test_the_grid_drops_a_fold_one_seed_lacks_rather_than_the_seeds_that_lack_it():
    # seed 0 ran folds 0-2, seeds 1 and 2 folds 0-1: the 2 x 3 grid (6 runs, an interval) beats the
    # 3 x 1 grid every fold would leave (3 runs, one seed, no interval)
    runs = {(f, s): 70.0 + f + s for f in range(2) for s in range(3)} | {(2, 0): 75.0}
    grid = statistics.grid_of(runs)
    assert grid.folds == (0, 1) and grid.seeds == (0, 1, 2) and grid.left_out == 1
    assert grid.values[1, 2] == 73.0
    # 3 folds x 2 seeds beats 2 folds x 3 seeds (as many runs, more animals)
    runs = {(f, s): 70.0 + f + s for f in range(3) for s in range(2)} | {(0, 2): 75.0, (1, 2): 76.0}
    grid = statistics.grid_of(runs)
    assert grid.folds == (0, 1, 2) and grid.seeds == (0, 1) and grid.left_out == 2
    # an interval first: 2 x 2 (4 runs) beats 5 folds x 1 seed (5 runs)
    runs = {(f, 0): 60.0 + f for f in range(5)} | {(0, 1): 61.0, (1, 1): 62.0}
    grid = statistics.grid_of(runs)
    assert (grid.folds, grid.seeds, grid.left_out) == ((0, 1), (0, 1), 3)
    # without any 2 x 2, the most runs: a frozen model's 5 folds x 1 seed, and one fold's seeds
    assert statistics.grid_of({(f, 0): 1.0 for f in range(5)}).values.shape == (5, 1)
    assert statistics.grid_of({(0, s): 1.0 for s in range(4)}).values.shape == (1, 4)
    assert statistics.grid_of({}).values.shape == (0, 0)
    # a tie goes to the earliest folds: folds 0-1 x seeds 0 and 2 before folds 0 and 2 x seeds 1-2
    runs = {(0, 0): 1.0, (1, 0): 2.0, (0, 1): 3.0, (2, 1): 4.0, (0, 2): 5.0, (1, 2): 6.0, (2, 2): 7.0}
    grid = statistics.grid_of(runs)
    assert grid.folds == (0, 1) and grid.seeds == (0, 2)
    # the same when the search runs over seeds (more folds than seeds): folds 0-1, not folds 2-3
    runs = {(f, s): 1.0 for f, s in [(0, 1), (0, 2), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0), (3, 1)]}
    assert statistics.grid_of(runs).folds == (0, 1)
    # a frozen model needs no second seed: its 5 folds x 1 seed carry an interval, not 2 x 2
    runs = {(f, 0): 60.0 + f for f in range(5)} | {(0, 1): 60.0, (1, 1): 61.0}
    assert statistics.grid_of(runs, trained=False).values.shape == (5, 1)


def test_a_cell_counts_the_animals_of_its_grid_only():
    # seed 0 ran folds 0-2 (12 animals each), seed 1 folds 0-1: the 2 x 2 grid speaks for 24 animals
    records = [r for r in _grid_records([[80, 82], [84, 86], [90, 91]]) if (r["split"]["fingerprint"], r["seed"]) != ("fold2", 1)]
    summary = statistics.summarize(records)
    assert summary.identities == 24 and summary.ci is not None
    assert summary.mean == pytest.approx((80 + 82 + 84 + 86) / 4)


def test_a_frozen_model_needs_no_seeds_and_pairs_with_every_seed():
    # a frozen baseline (no history: it did not train) gives one run per fold; its folds are the units
    frozen = [{**_run(v, f, 0), "history": []} for f, v in enumerate([70.0, 72.0, 75.0, 71.0, 74.0])]
    summary = statistics.summarize(frozen)
    half = sps.t.ppf(0.975, 4) * np.std([70, 72, 75, 71, 74], ddof=1) / np.sqrt(5)
    assert summary.why is None and summary.ci == pytest.approx((72.4 - half, 72.4 + half))
    trained = [{**r, "history": [{"epoch": 1}]} for r in _grid_records([[80, 82], [81, 84], [85, 86], [80, 82], [83, 85]])]
    pair = statistics.paired(trained, frozen)  # the frozen fold value stands for each seed of that fold
    d = np.array([[10, 12], [9, 12], [10, 11], [9, 11], [9, 11]], dtype=float)
    expected = statistics.fold_seed_estimate(statistics.Grid(tuple(range(5)), (0, 1), d))
    assert pair.difference == pytest.approx(d.mean()) and pair.ci == pytest.approx(expected.ci)
    assert pair.left_out == 0 and pair.runs == 10


def test_a_frozen_model_on_seed_0_pairs_with_a_cell_that_ran_other_seeds():
    frozen = [{**_run(70.0 + f, f, 0), "history": []} for f in range(5)]
    later = [{**r, "seed": r["seed"] + 2, "history": [{"epoch": 1}]}
             for r in _grid_records([[80, 82], [81, 84], [85, 86], [80, 82], [83, 85]])]  # seeds 2 and 3 only
    pair = statistics.paired(later, frozen)
    assert pair.refused is None and pair.runs == 10 and pair.left_out == 0
    assert pair.difference == pytest.approx(np.mean([[80, 82], [81, 84], [85, 86], [80, 82], [83, 85]]) - 72.0)
