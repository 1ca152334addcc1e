"""Retrieval metrics from embeddings: cosine similarity -> top-1, top-5, mAP.

Queries are processed in chunks, so memory is O(chunk x gallery), never O(query x gallery).
With ``exclude_self`` (the disjoint protocol, where query and gallery are the same test set) the
query's own image is removed from its gallery. Queries whose identity has no image in their
gallery cannot be answered; they are counted and left out of every metric.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def retrieval_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    exclude_self: bool = False,
    chunk: int = 1024,
    ks: tuple[int, ...] = (1, 5),
) -> dict:
    q = F.normalize(query.float(), dim=1)
    g = F.normalize(gallery.float(), dim=1)
    ql, gl = query_labels.long(), gallery_labels.long()
    n_gallery = g.shape[0] - (1 if exclude_self else 0)
    hits = {k: 0.0 for k in ks}
    ap_sum = 0.0
    answered = 0
    for start in range(0, q.shape[0], chunk):
        qc, lc = q[start : start + chunk], ql[start : start + chunk]
        sim = qc @ g.T
        if exclude_self:
            rows = torch.arange(qc.shape[0])
            sim[rows, rows + start] = float("-inf")
        match = lc[:, None] == gl[None, :]
        if exclude_self:
            match[rows, rows + start] = False
        positives = match.sum(1)
        ok = positives > 0
        if not ok.any():
            continue
        sim, match, positives = sim[ok], match[ok], positives[ok]
        answered += int(ok.sum())
        kmax = min(max(ks), n_gallery)
        top = sim.topk(kmax, dim=1).indices
        top_match = match.gather(1, top)
        for k in ks:
            hits[k] += float(top_match[:, : min(k, kmax)].any(1).sum())
        # average precision: rank every gallery item once per query (sorted, chunk-sized)
        order = sim.argsort(dim=1, descending=True)[:, :n_gallery]
        rel = match.gather(1, order).float()
        cum = rel.cumsum(1)
        ranks = torch.arange(1, rel.shape[1] + 1, dtype=torch.float32)
        ap = (rel * cum / ranks).sum(1) / positives.float()
        ap_sum += float(ap.sum())
    n = max(answered, 1)
    out = {f"top{k}": 100.0 * hits[k] / n for k in ks}
    out["mAP"] = 100.0 * ap_sum / n
    out["queries"] = answered
    out["unanswerable_queries"] = int(q.shape[0] - answered)
    return out
