"""Identity folds, per-query records, bootstrap intervals over identities and paired comparisons."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from harness.config import RunConfig
from harness.data.splits import identity_folds, make_split
from harness.evaluation import statistics
from harness.engine.evaluate import retrieval_metrics


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
    split = make_split(df, "disjoint", 666, dataset="x:1", folds=5, fold=2)
    assert np.array_equal(split.test, folds[2][1])
    assert split.fingerprint != make_split(df, "disjoint", 666, dataset="y:1", folds=5, fold=2).fingerprint
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
    full = retrieval_metrics(emb, labels, emb, labels, exclude_self=True)
    assert full["per_query"]["first_rank"][3] is None and full["unanswerable_queries"] == 2
    assert full["chance_top1"] == pytest.approx(100 * 1 / 3)  # one positive among three others


def test_per_query_outcomes_round_trip_to_the_metrics(run_record):
    rec = run_record
    runs = statistics.outcomes_of(rec)
    assert runs is not None and len(runs.image_id) == rec["metrics"]["queries"]
    assert runs.scores("top1").mean() == pytest.approx(rec["metrics"]["top1"])
    assert runs.scores("top5").mean() == pytest.approx(rec["metrics"]["top5"])
    assert runs.scores("mAP").mean() == pytest.approx(rec["metrics"]["mAP"], abs=1e-3)
    assert set(rec["queries"]) == {"image_id", "identity", "first_rank", "ap"}
    assert json.loads(json.dumps(rec))["queries"] == rec["queries"]


def _record(identities, hits, seed=0, fingerprint="f"):
    ranks = [1 if h else 2 for h in hits]
    return {"split": {"fingerprint": fingerprint}, "seed": seed, "metrics": {"top1": 100.0 * np.mean(hits)},
            "queries": {"image_id": [f"{fingerprint}{i}" for i in range(len(hits))], "identity": identities,
                        "first_rank": ranks, "ap": [1.0 if h else 0.5 for h in hits]}}


def test_bootstrap_interval_on_a_constructed_case():
    # every identity answers 3 of its 4 queries: any resample gives 75, the interval is that point
    ids = [f"i{k}" for k in range(40) for _ in range(4)]
    hits = [q != 3 for k in range(40) for q in range(4)]
    summary = statistics.summarize([_record(ids, hits)])
    assert summary.mean == pytest.approx(75.0) and summary.ci == pytest.approx((75.0, 75.0))
    # half the identities always right, half always wrong: the interval is the binomial one over
    # identities, 50 +- 1.96 * sqrt(.25 / 400) * 100 = +-4.9, not over images (4x narrower would be wrong)
    ids = [f"i{k}" for k in range(400) for _ in range(5)]
    hits = [k % 2 == 0 for k in range(400) for _ in range(5)]
    low, high = statistics.summarize([_record(ids, hits)]).ci
    assert 50 - low == pytest.approx(4.9, abs=0.6) and high - 50 == pytest.approx(4.9, abs=0.6)


def test_paired_difference_and_its_refusals():
    ids = [f"i{k}" for k in range(60) for _ in range(3)]
    a_hits = [k % 3 != 0 for k in range(60) for _ in range(3)]
    b_hits = [k % 3 == 1 for k in range(60) for _ in range(3)]
    a, b = _record(ids, a_hits), _record(ids, b_hits)
    pair = statistics.paired([a], [b])
    assert pair.difference == pytest.approx(100 * (40 - 20) / 60) and pair.significant
    assert pair.ci[0] > 0 and pair.identities == 60
    same = statistics.paired([a], [a])
    assert same.difference == 0 and not same.significant
    assert "folds or seeds differ" in statistics.paired([a], [_record(ids, b_hits, seed=1)]).refused
    assert "folds or seeds differ" in statistics.paired([a], [_record(ids, b_hits, fingerprint="g")]).refused
    old = dict(b)
    del old["queries"]
    assert "without per-query outcomes" in statistics.paired([a], [old]).refused


def test_a_seed_missing_from_a_replicate_is_left_out_not_scored_zero():
    # seed 0 tested identities a..d, seed 1 only e: replicates without e must not count seed 1 as 0
    a = _record(["a", "b", "c", "d"], [True] * 4, seed=0, fingerprint="f0")
    b = _record(["e"], [True], seed=1, fingerprint="f1")
    summary = statistics.summarize([a, b])
    assert summary.mean == pytest.approx(100.0) and summary.ci == pytest.approx((100.0, 100.0))


def test_accumulation_and_compile_do_not_change_the_experiment():
    base = RunConfig(batch_size=64)
    assert RunConfig(batch_size=64, accumulate=4, compile="inductor").experiment_hash() == base.experiment_hash()
    assert RunConfig(batch_size=32).experiment_hash() != base.experiment_hash()
