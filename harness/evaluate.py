"""Retrieval metrics from embeddings: cosine similarity -> top-1, top-5, mAP.

Queries are processed in chunks sized so that one chunk's similarity block stays within a fixed
element budget: memory is O(budget), never O(queries x gallery). No row is sorted and no
query x gallery label-match matrix is built:
- a query's positives are found through the gallery grouped by label (a gather of P columns);
- top-k comes from ``topk`` and the labels of the k winners;
- average precision needs only each positive's rank = its place among the positives + the number
  of negatives scoring higher. Only gallery items scoring above the query's lowest positive can
  be above any positive; those few are located among the sorted positives with one flat
  ``searchsorted`` (rows kept apart by an offset in float64), and a per-row histogram of the
  positions, summed from the top, gives the negatives above each positive.
Ties: a negative scoring exactly like a positive ranks below it.
With ``exclude_self`` (the disjoint protocol: query set == gallery set) the query's own image is
removed from its gallery. Queries whose identity has no image in their gallery cannot be answered;
they are counted and left out of every metric.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_BUDGET = 1 << 23  # similarity entries per chunk (8M: ~32 MB of float32)


def _ranks_above(sim: torch.Tensor, pos_sorted: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """For ascending positives (c, P) (+inf padded), the number of gallery items (positives
    included) scoring strictly above each one's position: returns (c, P) counts of *negatives*."""
    c, p = pos_sorted.shape
    lowest = pos_sorted[:, :1]
    rows, cols = (sim > lowest).nonzero(as_tuple=True)  # only these can outrank a positive
    offset = 4.0 * torch.arange(c, dtype=torch.float64)  # cosine is in [-1, 1]: rows cannot mix
    bounds = torch.where(valid, pos_sorted.double(), 2.0) + offset[:, None]  # pad above any cosine
    values = sim[rows, cols].double() + offset[rows]
    below = torch.searchsorted(bounds.flatten(), values) - rows * p  # positives strictly below
    hist = torch.bincount(rows * (p + 1) + below, minlength=c * (p + 1)).view(c, p + 1)
    # the positives themselves are among the items counted above: take them out again
    own = torch.searchsorted(bounds, torch.where(valid, pos_sorted.double(), -9.0) + offset[:, None])
    own = torch.where(valid & (pos_sorted > lowest), own, torch.full_like(own, p + 1))  # p+1: discarded
    hist_pos = torch.zeros(c, p + 2, dtype=hist.dtype).scatter_add_(1, own, torch.ones_like(own))[:, : p + 1]
    hist_neg = hist - hist_pos
    # negatives above ascending positive i = those located above it: sum_{j > i} hist_neg[j]
    return hist_neg.sum(1, keepdim=True) - hist_neg.cumsum(1)[:, :p]


@torch.no_grad()
def retrieval_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    exclude_self: bool = False,
    chunk: int | None = None,
    ks: tuple[int, ...] = (1, 5),
    budget: int = DEFAULT_BUDGET,
) -> dict:
    q = F.normalize(query.float(), dim=1)
    g = F.normalize(gallery.float(), dim=1)
    _, inverse = torch.unique(torch.cat([query_labels.long(), gallery_labels.long()]), return_inverse=True)
    ql, gl = inverse[: len(q)], inverse[len(q) :]
    n_labels = int(inverse.max()) + 1 if len(inverse) else 1
    # the gallery grouped by label: positives of label l are by_label[start[l] : start[l] + count[l]]
    by_label = torch.argsort(gl, stable=True)
    count = torch.bincount(gl, minlength=n_labels)
    start = count.cumsum(0) - count
    n_gallery = g.shape[0] - (1 if exclude_self else 0)
    if chunk is None:
        chunk = max(1, budget // max(1, g.shape[0]))
    gt = g.T.contiguous()
    kmax = min(max(ks), n_gallery)
    hits = {k: 0.0 for k in ks}
    ap_sum = 0.0
    answered = 0
    for begin in range(0, q.shape[0], chunk):
        lc = ql[begin : begin + chunk]
        rows = torch.arange(len(lc))
        pmax = int(count[lc].max())
        if pmax == 0:
            continue
        slot = torch.arange(pmax)[None, :]
        pos_idx = by_label[(start[lc][:, None] + slot).clamp(max=len(by_label) - 1)]
        valid = slot < count[lc][:, None]
        if exclude_self:
            valid &= pos_idx != (rows + begin)[:, None]
        positives = valid.sum(1)
        ok = positives > 0
        if not bool(ok.any()):
            continue
        sim = q[begin : begin + chunk] @ gt
        if exclude_self:
            sim[rows, rows + begin] = float("-inf")
        if not bool(ok.all()):
            sim, lc, pos_idx, valid, positives = sim[ok], lc[ok], pos_idx[ok], valid[ok], positives[ok]
        answered += int(ok.sum())
        winners = gl[sim.topk(kmax, dim=1).indices] == lc[:, None]
        for k in ks:
            hits[k] += float(winners[:, : min(k, kmax)].any(1).sum())
        pos_sim = torch.where(valid, sim.gather(1, pos_idx), float("inf"))
        pos_sorted, _ = pos_sim.sort(dim=1)
        valid_sorted = torch.arange(pos_sorted.shape[1])[None, :] < positives[:, None]
        above = _ranks_above(sim, pos_sorted, valid_sorted)
        k_rank = positives[:, None] - torch.arange(pos_sorted.shape[1])[None, :]  # rank among positives
        contrib = torch.where(valid_sorted, k_rank / (k_rank + above).clamp(min=1), 0.0)
        ap_sum += float((contrib.sum(1) / positives).sum())
    n = max(answered, 1)
    out = {f"top{k}": 100.0 * hits[k] / n for k in ks}
    out["mAP"] = 100.0 * ap_sum / n
    out["queries"] = answered
    out["unanswerable_queries"] = int(q.shape[0] - answered)
    return out
