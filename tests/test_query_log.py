"""Per-query logs: every record names a side file with each query's top-k gallery matches (image
ids, identities, scores) and its open-set answer; the committed logs stay within their budget."""

import numpy as np
import torch

from harness.config import RunConfig
from harness.core.paths import REPO_ROOT
from harness.engine import records
from harness.engine.run import execute
from harness.evaluation.retrieval import Exclusion, retrieval_metrics
from harness.evaluation.scoring import TOP_K


def test_top_k_is_best_first_after_exclusion():
    # 1-d embeddings on a circle: angle decides the cosine, so the order is known by hand
    angles = torch.tensor([0.0, 0.1, 0.3, 0.6, 1.0])
    x = torch.stack([angles.cos(), angles.sin()], 1)
    labels = torch.tensor([0, 0, 1, 1, 0])
    out = retrieval_metrics(x, labels, x, labels, Exclusion(itself=True), top=6)
    index, score = out["top"]["index"], out["top"]["score"]
    assert index.shape == (5, 6)
    assert index[0].tolist() == [1, 2, 3, 4, -1, -1]  # itself excluded, gallery of 4 left
    assert index[3].tolist() == [2, 4, 1, 0, -1, -1]
    assert np.allclose(score[0, :4], np.cos([0.1, 0.3, 0.6, 1.0]), atol=1e-6) and np.isnan(score[0, 4:]).all()
    assert index[:, 0].tolist() == out["per_query"]["best_index"]
    assert "top" not in retrieval_metrics(x, labels, x, labels, Exclusion(itself=True))  # only when asked


def test_same_key_items_never_appear_in_the_top_k():
    x = torch.eye(4) + 0.1
    labels = torch.tensor([0, 0, 1, 1])
    keys = torch.tensor([7, 7, 8, 9])  # images 0 and 1: same animal, same day
    out = retrieval_metrics(x, labels, x, labels, Exclusion(query_keys=keys, gallery_keys=keys), top=3)
    assert 1 not in out["top"]["index"][0].tolist() and 0 not in out["top"]["index"][0].tolist()
    assert 3 in out["top"]["index"][2].tolist()  # other day: kept


def test_a_log_round_trips_with_its_decisions(tmp_path):
    rows = np.array([[2, 0, -1], [1, 2, 0]])
    top = {"rows": rows, "score": np.array([[0.9, 0.5, np.nan], [0.8, 0.25, -0.1]]), "decision": ["b", None]}
    image_ids, identities = np.array(["i0", "i1", "i2"]), np.array(["a", "a", "b"])
    about = records.write_query_log(tmp_path / "r.topk.npz", top, ["i1", "i0"], image_ids, identities)
    assert about["k"] == 3 and about["file"] == "r.topk.npz" and about["bytes"] == (tmp_path / "r.topk.npz").stat().st_size
    log = records.read_query_log(tmp_path / "r.json", {"query_log": about})
    assert log["image_id"].tolist() == [["i2", "i0", ""], ["i1", "i2", "i0"]]
    assert log["identity"].tolist() == [["b", "a", ""], ["a", "b", "a"]]
    assert np.allclose(log["score"][1], [0.8, 0.25, -0.1], atol=1e-3) and np.isnan(log["score"][0, 2])
    assert log["decision"] == ["b", None] and log["query_image_id"].tolist() == ["i1", "i0"]
    assert records.read_query_log(tmp_path / "old.json", {}) is None  # an older record names none


def test_a_run_writes_its_log_beside_its_record(tmp_path):
    options = (("identities", "10"), ("image_size", "32"), ("images_per_identity", "6"), ("sessions", "3"))
    cfg = RunConfig(method="vit", dataset="synthetic", backbone="nano", image_size=32, epochs=1, batch_size=16,
                    dataset_options=options, protocol="open")
    record, path = execute(cfg, tmp_path, progress=False)
    assert record["schema"] == records.SCHEMA_VERSION and record["query_log"]["k"] == TOP_K
    assert (tmp_path / record["query_log"]["file"]).exists()
    log = records.read_query_log(path, record)
    queries = record["queries"]
    assert log["query_image_id"].tolist() == queries["image_id"]
    assert log["identity"][:, 0].tolist() == [b or "" for b in queries["best_identity"]]
    assert np.allclose(log["score"][:, 0], queries["best_score"], atol=2e-3)
    assert log["decision"] == queries["predicted"]
    hit = [r == 1 for r in queries["first_rank"]]
    assert hit == [i == q for i, q in zip(log["identity"][:, 0], queries["identity"])]


def test_committed_logs_stay_within_their_budget():
    logs = list((REPO_ROOT / "results").rglob(f"*{records.QUERY_LOG_SUFFIX}"))
    assert sum(p.stat().st_size for p in logs) <= records.QUERY_LOG_BUDGET_BYTES
    named = {p.name for p in logs}
    # every committed log belongs to a record beside it
    assert all(p.with_name(p.name[: -len(records.QUERY_LOG_SUFFIX)] + ".json").exists() for p in logs), named


def test_a_macaquefaces_sized_log_is_about_46_kb(tmp_path):
    # 1,300 queries (MacaqueFaces' disjoint fold) against each other, top 10: the budget's unit cost
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(1300) % 7
    x = torch.randn(7, 64, generator=g)[labels] + 1.5 * torch.randn(1300, 64, generator=g)
    out = retrieval_metrics(x, labels, x, labels, Exclusion(itself=True), top=TOP_K)
    ids = np.array([f"{i:06d}.jpg" for i in range(1300)])
    about = records.write_query_log(tmp_path / "m.topk.npz", {"rows": out["top"]["index"], "score": out["top"]["score"]},
                                    ids, ids, np.array([f"monkey_{i % 7}" for i in range(1300)]))
    assert 30_000 < about["bytes"] < 60_000
    assert records.QUERY_LOG_BUDGET_BYTES // about["bytes"] > 1000  # the budget holds a thousand such runs
