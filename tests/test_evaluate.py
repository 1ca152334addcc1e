import pytest
import torch
import torch.nn.functional as F

from harness.evaluation import retrieval
from harness.evaluation.retrieval import Exclusion, retrieval_metrics


def brute_force(q, ql, g, gl, exclude_self, ks=(1, 5)):
    """Per query: full sort by score, a negative tied with a positive placed above it (pessimistic);
    AP from ranks."""
    sim = F.normalize(q.float(), dim=1) @ F.normalize(g.float(), dim=1).T
    hits = {k: 0 for k in ks}
    ap = n = 0
    for i in range(len(q)):
        keep = torch.ones(len(g), dtype=torch.bool)
        if exclude_self:
            keep[i] = False
        s, rel = sim[i][keep].double(), (gl[keep] == ql[i]).double()
        if rel.sum() == 0:
            continue
        # primary key: score, descending; among equal scores the negatives first (two stable sorts)
        by_rel = rel.argsort(descending=False, stable=True)
        order = by_rel[s[by_rel].argsort(descending=True, stable=True)]
        r = rel[order]
        n += 1
        for k in ks:
            hits[k] += float(r[:k].max())
        prec = r.cumsum(0) / torch.arange(1, len(r) + 1)
        ap += float((prec * r).sum() / r.sum())
    out = {f"top{k}": 100 * hits[k] / n for k in ks}
    return {**out, "mAP": 100 * ap / n, "queries": n}


def test_matches_dense_reference_and_is_chunk_invariant():
    torch.manual_seed(0)
    g = torch.randn(300, 16)
    gl = torch.randint(0, 20, (300,))
    q = torch.randn(70, 16)
    ql = torch.randint(0, 25, (70,))  # labels 20..24 have no gallery match
    ref = brute_force(q, ql, g, gl, False)
    for chunk in (7, 64, 1000):
        got = retrieval_metrics(q, ql, g, gl, chunk=chunk)
        for k in ("top1", "top5", "mAP"):
            assert abs(got[k] - ref[k]) < 1e-4, (k, chunk)
        assert got["queries"] == ref["queries"]
        assert got["unanswerable_queries"] == 70 - ref["queries"]


def test_exclude_self_leave_one_out():
    torch.manual_seed(1)
    x = torch.randn(50, 8)
    lab = torch.randint(0, 8, (50,))
    ref = brute_force(x, lab, x, lab, True)
    got = retrieval_metrics(x, lab, x, lab, Exclusion(itself=True), chunk=9)
    for k in ("top1", "top5", "mAP"):
        assert abs(got[k] - ref[k]) < 1e-4
    # without excluding itself every query would find itself first
    assert retrieval_metrics(x, lab, x, lab)["top1"] == 100.0
    # one key per image excludes exactly what ``itself`` does
    by_key = retrieval_metrics(x, lab, x, lab, Exclusion(query_keys=torch.arange(50), gallery_keys=torch.arange(50)))
    assert by_key["per_query"]["first_rank"] == got["per_query"]["first_rank"] and by_key["mAP"] == got["mAP"]


def test_exclusion_keys_remove_same_key_items_of_the_query_identity():
    g = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    gl = torch.tensor([0, 0, 1])
    q, ql = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    m = retrieval_metrics(q, ql, g, gl, Exclusion(query_keys=torch.tensor([4]), gallery_keys=torch.tensor([4, 5, 4])))
    # g0 (same identity, same key) is gone; g2 shares the key but not the identity, so it stays a negative
    assert m["per_query"]["first_rank"] == [1] and m["per_query"]["best_index"] == [1]
    with pytest.raises(ValueError, match="needed for both queries and gallery"):
        retrieval_metrics(q, ql, g, gl, Exclusion(query_keys=torch.tensor([4])))
    with pytest.raises(ValueError, match="excluding itself needs query set == gallery set"):
        retrieval_metrics(q, ql, g, gl, Exclusion(itself=True))


def test_perfect_and_hand_computed_ap():
    g = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    gl = torch.tensor([0, 1, 0, 1])
    q = torch.tensor([[1.0, 0.0]])
    m = retrieval_metrics(q, torch.tensor([0]), g, gl)
    # ranking: g0 (hit), g1 (miss), g3 (miss), g2 (hit) -> AP = (1/1 + 2/4) / 2 = 0.75
    assert m["top1"] == 100.0 and abs(m["mAP"] - 75.0) < 1e-5
    m = retrieval_metrics(q, torch.tensor([1]), g, gl)
    assert m["top1"] == 0.0 and m["top5"] == 100.0


def test_many_positives_and_one_query_per_chunk():
    torch.manual_seed(2)
    g = torch.randn(200, 6)
    gl = torch.randint(0, 3, (200,))  # ~67 positives per query
    q = torch.randn(40, 6)
    ql = torch.randint(0, 3, (40,))
    a = retrieval_metrics(q, ql, g, gl, budget=200)  # a budget of 200 entries: one query per chunk
    ref = brute_force(q, ql, g, gl, False)
    for k in ("top1", "top5", "mAP"):
        assert abs(a[k] - ref[k]) < 1e-3, k


def test_a_negative_tied_with_a_positive_ranks_above_it():
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    gl = torch.tensor([1, 0, 0])  # the negative (label 1) has exactly the positive's score
    m = retrieval_metrics(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), g, gl)
    # pessimistic: the tied negative first, positives rank 2 and 3 -> AP = (1/2 + 2/3) / 2, no top-1 hit
    assert abs(m["mAP"] - 100 * (1 / 2 + 2 / 3) / 2) < 1e-4
    assert m["top1"] == 0.0 and m["tied_queries"] == 1 and m["per_query"]["first_rank"] == [2]


def _check(got, ref, tol=1e-9):
    for k in ("top1", "top5", "mAP"):
        assert abs(got[k] - ref[k]) < tol, (k, got[k], ref[k])
    assert got["queries"] == ref["queries"]


@pytest.mark.parametrize("full_passes", [0, 1, 2, 50])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_exact_ties_against_brute_force(monkeypatch, full_passes, exclude_self):
    """Scaled one-hot galleries and two-hot queries: every score is exactly 0, 1/sqrt(2) or 1, so
    ties between positives, between negatives and across the two are everywhere."""
    monkeypatch.setattr(retrieval, "FULL_PASSES", full_passes)
    gen = torch.Generator().manual_seed(3)
    d, n = 6, 203  # a gallery width that is not a multiple of 8
    g = torch.zeros(n, d)
    g[torch.arange(n), torch.randint(0, d, (n,), generator=gen)] = torch.rand(n, generator=gen) + 0.5
    gl = torch.randint(0, 9, (n,), generator=gen)
    if exclude_self:
        q, ql = g, gl
    else:
        q = torch.zeros(60, d)
        q[torch.arange(60), torch.randint(0, d, (60,), generator=gen)] = 1.0
        q[torch.arange(60), torch.randint(0, d, (60,), generator=gen)] = 2.0
        ql = torch.randint(0, 12, (60,), generator=gen)  # labels 9..11: unanswerable
    ref = brute_force(q, ql, g, gl, exclude_self)
    for budget in (1, 500, 1 << 20):
        _check(retrieval_metrics(q, ql, g, gl, Exclusion(itself=exclude_self), budget=budget), ref)


@pytest.mark.parametrize("full_passes", [0, 1, 3])
def test_random_scores_against_brute_force(monkeypatch, full_passes):
    monkeypatch.setattr(retrieval, "FULL_PASSES", full_passes)
    gen = torch.Generator().manual_seed(4)
    centres = torch.randn(15, 12, generator=gen)
    gl = torch.randint(0, 15, (240,), generator=gen)
    g = centres[gl] + torch.randn(240, 12, generator=gen)
    ql = torch.randint(0, 17, (90,), generator=gen)  # 15, 16: no gallery image
    q = centres[ql.clamp(max=14)] + torch.randn(90, 12, generator=gen)
    ref = brute_force(q, ql, g, gl, False)
    for chunk in (1, 13, 90):
        got = retrieval_metrics(q, ql, g, gl, chunk=chunk, ks=(1, 5))
        _check(got, ref, tol=1e-4)
        assert got["unanswerable_queries"] == 90 - ref["queries"]
    ref = brute_force(g, gl, g, gl, True)
    _check(retrieval_metrics(g, gl, g, gl, Exclusion(itself=True), budget=2000), ref, tol=1e-4)


def test_row_true_counts():
    gen = torch.Generator().manual_seed(5)
    for c, n in [(3, 8), (4, 8 * 37), (2, 8 * 62 * 31), (6, 8 * 1250)]:
        m = torch.rand(c, n, generator=gen) < torch.rand(c, 1, generator=gen)
        m[0] = True  # every lane at its maximum
        m[1] = False
        assert torch.equal(retrieval._row_true_counts(m), m.sum(1))
