"""The metrics registry: every metric on constructed cases with hand-computed answers, BAKS / BAUS /
AUROC against wildlife-datasets' own functions, and the registry's top-1 / top-5 / mAP equal to
the retrieval code's."""
import numpy as np
import pytest
import torch
from wildlife_datasets.metrics import metrics as wd

from harness.cli.run import summary_line
from harness.evaluation.retrieval import retrieval_metrics
from harness.evaluation import metrics
from harness.evaluation.metrics import METRICS, ORDER, auroc, compute, per_query

RETRIEVAL = {"first_rank": [1, 3, None, 6], "ap": [1.0, 0.5, None, 0.2]}


def _open_case():
    """Known A (2 queries: right, wrong), B (1: right); new C (3: one said "new"), D (1: said "new")."""
    return {
        "identity": ["A", "A", "B", "C", "C", "C", "D"],
        "known": [True, True, True, False, False, False, False],
        "predicted": ["A", "B", "B", None, "A", "B", None],
        "best_score": [0.9, 0.8, 0.4, 0.5, 0.4, 0.3, 0.1],
        "first_rank": [1, 2, 1, None, None, None, None],
        "ap": [1.0, 0.5, 1.0, None, None, None, None],
    }


def test_retrieval_metrics_by_hand():
    got = compute(RETRIEVAL)
    assert set(got) == {"top1", "top5", "mAP"}  # no open-set field: no open-set metric
    assert got["top1"] == pytest.approx(100 / 3)  # 1 of the 3 answerable queries
    assert got["top5"] == pytest.approx(200 / 3)  # ranks 1 and 3
    assert got["mAP"] == pytest.approx(100 * 1.7 / 3)
    assert np.isnan(per_query("top1", RETRIEVAL)[2])  # the unanswerable query does not count


def test_open_set_metrics_by_hand():
    got = compute(_open_case())
    assert got["baks"] == pytest.approx(75.0)  # mean(A 1/2, B 1/1)
    assert got["baus"] == pytest.approx(100 * (1 / 3 + 1) / 2)  # mean(C 1/3, D 1/1)
    assert got["baks_baus_gmean"] == pytest.approx(np.sqrt(75.0 * 200 / 3))
    # known 0.9, 0.8, 0.4 vs new 0.5, 0.4, 0.3, 0.1: 12 pairs, 0.4 loses to 0.5 and ties 0.4
    assert got["new_auroc"] == pytest.approx(100 * (4 + 4 + 2.5) / 12)
    assert got["top1"] == pytest.approx(200 / 3)  # known queries only: new ones have no match


def test_no_answerable_query_is_no_value_not_zero():
    # a record's metric is None when no query counts (the registry's values replace the retrieval
    # summary's in a record): a 0 would enter a cell's mean as if every query had failed
    m = retrieval_metrics(torch.tensor([[1.0, 0.0]]), torch.tensor([7]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    assert m["queries"] == 0
    assert compute(m["outcomes"]) == {"top1": None, "top5": None, "mAP": None}


def test_auroc_edge_cases():
    assert auroc(np.array([1.0]), np.array([0.0])) == 1.0
    assert auroc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5
    assert np.isnan(auroc(np.array([]), np.array([0.5])))


def test_a_metric_no_query_counts_for_is_none():
    case = {k: v[:3] for k, v in _open_case().items()}  # known individuals only
    got = compute(case)
    assert got["baus"] is None and got["baks_baus_gmean"] is None and got["new_auroc"] is None
    assert got["baks"] == pytest.approx(75.0)


@pytest.mark.parametrize("seed", range(5))
def test_baks_baus_auroc_equal_wildlife_datasets(seed):
    rng = np.random.default_rng(seed)
    n = 200
    names = np.array([f"id{i}" for i in range(12)])
    new_names = names[:5]
    identity = rng.choice(names, n)
    known = ~np.isin(identity, new_names)
    guess = rng.choice(names[5:], n)  # an answer among the known identities, right or wrong
    guess = np.where(rng.random(n) < 0.4, identity, guess)
    said_new = rng.random(n) < np.where(known, 0.2, 0.6)
    predicted = [None if s else str(g) for s, g in zip(said_new, guess)]
    score = np.round(rng.random(n), 2)  # rounded: ties between known and new scores occur
    got = compute({"identity": identity.tolist(), "known": known.tolist(), "predicted": predicted,
                   "best_score": score.tolist()})
    new_class = "__new__"
    y_pred = [new_class if p is None else p for p in predicted]
    assert got["baks"] == pytest.approx(100 * wd.BAKS(identity.tolist(), y_pred, new_names.tolist()))
    assert got["baus"] == pytest.approx(100 * wd.BAUS(identity.tolist(), y_pred, new_names.tolist(), new_class))
    y_true = [new_class if not k else t for k, t in zip(known, identity)]
    assert got["new_auroc"] == pytest.approx(100 * wd.auc_roc_new_class(y_true, score.tolist(), new_class))
    assert got["baks_baus_gmean"] == pytest.approx(np.sqrt(got["baks"] * got["baus"]))


def test_registry_equals_the_retrieval_code_on_random_data():
    torch.manual_seed(3)
    gallery, query = torch.randn(120, 8), torch.randn(40, 8)
    gl, ql = torch.randint(0, 10, (120,)), torch.randint(0, 12, (40,))
    m = retrieval_metrics(query, ql, gallery, gl)
    got = compute(m["outcomes"])
    assert got["top1"] == m["top1"] and got["top5"] == m["top5"]
    assert got["mAP"] == pytest.approx(m["mAP"], rel=1e-12)
    # the stored per-query lists (ap rounded to 6 places) give the same numbers to display precision
    assert compute(m["per_query"])["mAP"] == pytest.approx(m["mAP"], abs=1e-3)


def test_best_match_score_and_position():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    m = retrieval_metrics(torch.tensor([[0.0, 1.0], [1.0, 0.1]]), torch.tensor([5, 0]), gallery,
                          torch.tensor([0, 1, 2]))
    assert m["per_query"]["best_index"] == [1, 0]
    assert m["per_query"]["best_score"][0] == pytest.approx(1.0)
    assert m["per_query"]["best_score"][1] == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)
    assert m["per_query"]["first_rank"] == [None, 1]  # label 5 has no gallery image, still a best match


def test_every_metric_is_registered_with_its_fields_and_listed(cli):
    assert ORDER[:3] == ["top1", "top5", "mAP"]
    assert set(ORDER) >= {"baks", "baus", "baks_baus_gmean", "new_auroc"}
    assert METRICS.get("baks").factory.needs == metrics.OPEN_FIELDS
    out = cli("list").output
    section = out[out.index("metrics"):]
    for name in ORDER:
        assert f"  {name} " in section  # as records and --metric spell it (mAP)


def test_summary_line_of_an_old_record_and_of_an_open_set_one():
    old = {"metrics": {"top1": 50.0, "top5": 75.0, "mAP": 60.0, "queries": 4}, "config": {"method": "vit",
           "dataset": "synthetic"}, "protocol": "disjoint", "seed": 0, "wall_time_s": 1.0}
    assert summary_line(old) == "vit | synthetic | disjoint | seed 0 | top-1 50.0 | top-5 75.0 | mAP 60.0 | 1.0 s"
    new = {**old, "metrics": {**old["metrics"], "baks": 70.0, "baus": None}, "config": {**old["config"],
           "exclude": "same-day"}}
    assert summary_line(new) == ("vit | synthetic | disjoint | exclude same-day | seed 0 | top-1 50.0 | top-5 75.0 | "
                                 "mAP 60.0 | BAKS 70.0 | BAUS - | 1.0 s")
