"""Retrieval metrics from embeddings: cosine similarity -> top-1, top-5, mAP.

Queries are processed in chunks sized so that one chunk's similarity block stays within a fixed
element budget: memory is O(budget), never O(queries x gallery). The similarity block and a mask of
the same shape are allocated once and reused for every chunk (``mm(out=)``, ``gt(out=)``): fresh
tens-of-MB blocks per chunk would cost as much in page faults as the arithmetic. No row is sorted
and no query x gallery label-match matrix is built:
- a query's positives are found through the gallery grouped by label (a gather of P columns) and
  sorted, ascending, per query (P values);
- everything then follows from G[j] = the number of gallery items scoring at least as high as
  positive j. The negatives among them are G[j] minus the positives scoring at least as high,
  which gives its rank for average precision; for the best positive that is the number of
  negatives ranked above it, so a top-k hit is "fewer than k" (no ``topk``);
- G for the lowest ``FULL_PASSES`` positives is a compare-and-count over the row: ``ge`` into the
  mask, whose rows are counted as int64 words of 8 bytes (the gallery is padded to a multiple of 8
  columns that score -inf), not byte by byte. The few items above the next positive are gathered
  (``nonzero`` of the mask) and placed among that query's remaining positives with one flat
  ``searchsorted`` on int64 keys (row << 32 + an order-preserving integer image of the float32
  score: exact, rows cannot mix); a per-row histogram of those positions, summed from the top,
  gives G for the remaining positives.
Ties: a negative scoring exactly like a positive ranks ABOVE it (pessimistic: a tie is never
resolved in the query's favour); the queries whose best positive ties with some negative (their
first rank would be better if ties were resolved the other way) are counted (``tied_queries``).
With ``exclude_self`` (the disjoint protocol: query set == gallery set) the query's own image is
removed from its gallery. Queries whose identity has no image in their gallery cannot be answered;
they are counted and left out of every metric.

Besides the metrics, every query's outcome is returned (``per_query``: the rank of its first
correct match and its average precision; None for unanswerable queries), so intervals and paired
tests can be computed later without the embeddings, and ``chance_top1``: the expected top-1 of a
random ranking on this test set (mean over answerable queries of positives / gallery size).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_BUDGET = 1 << 23  # similarity entries per chunk (8M: ~32 MB of float32)
FULL_PASSES = 2  # positives (lowest first) whose G is counted over the whole row; 1-3 measure alike


def _ordered_key(x: torch.Tensor) -> torch.Tensor:
    """int64 image of float32 ``x`` with the same order (-0.0 and +0.0 map alike; no NaNs)."""
    bits = x.contiguous().view(torch.int32)
    mag = bits & 0x7FFFFFFF
    return torch.where(bits < 0, -mag, mag).long()


def _row_true_counts(mask: torch.Tensor) -> torch.Tensor:
    """Number of True per row of a (c, n) bool mask, n a multiple of 8, without widening every byte:
    the row is read as int64 words of 8 bytes (each 0 or 1) and groups of ``span`` <= 31 words are
    summed, so each byte lane holds a count <= 31 with no carry between lanes (and no overflow); the
    8 lanes of each group sum are then added by shifts (lane 0 ends at <= 8 * 31 < 256)."""
    words = mask.view(torch.int64)
    c, w = words.shape
    span = max(d for d in range(1, 32) if w % d == 0)
    x = words.view(c, w // span, span).sum(2)
    x = x + (x >> 32)
    x = x + (x >> 16)
    x = x + (x >> 8)
    return (x & 0xFF).sum(1)


def _count_at_least(sim: torch.Tensor, pos_sorted: torch.Tensor, mask: torch.Tensor, full_passes: int) -> torch.Tensor:
    """G (c, P) int64: the number of entries of each row of ``sim`` (c, n) at or above each of that
    row's ascending thresholds ``pos_sorted`` (c, P) (+inf padded). ``mask`` is a (c, n) bool scratch;
    n must be a multiple of 8."""
    c, p = pos_sorted.shape
    counts = torch.zeros(c, p, dtype=torch.int64)
    full = min(full_passes, p)
    for j in range(full):
        torch.ge(sim, pos_sorted[:, j : j + 1], out=mask)
        counts[:, j] = _row_true_counts(mask)
    if full == p:
        return counts
    # the items at or above positive `full`: the only ones that can reach any higher positive
    torch.ge(sim, pos_sorted[:, full : full + 1], out=mask)
    flat = mask.view(-1).nonzero().squeeze(1)
    rows = torch.div(flat, sim.shape[1], rounding_mode="floor")
    keys = (rows << 32) + _ordered_key(torch.take(sim, flat))
    # bounds per row: its remaining thresholds, then a sentinel above any float32 key
    w = p - full + 1
    bounds = torch.full((c, w), (1 << 31) - 1, dtype=torch.int64)
    bounds[:, :-1] = _ordered_key(pos_sorted[:, full:])
    bounds += (torch.arange(c, dtype=torch.int64) << 32)[:, None]
    # place = row * w + (number of that row's thresholds at or below the score), 1 <= . < w
    place = torch.searchsorted(bounds.view(-1), keys, right=True)
    hist = torch.bincount(place, minlength=c * w).view(c, w)
    # at or above threshold full + t  <=>  at least t + 1 thresholds at or below: suffix sums
    counts[:, full:] = hist.flip(1).cumsum(1).flip(1)[:, 1:]
    return counts


@dataclass
class _Gallery:
    """The gallery, prepared once: unit vectors transposed and padded to a multiple of 8 columns
    (mask rows pack into int64 words; the pad scores -inf), and its items grouped by label:
    positives of label l are ``by_label[start[l] : start[l] + count[l]]``."""

    columns: torch.Tensor  # (D, width)
    size: int
    by_label: torch.Tensor
    start: torch.Tensor
    count: torch.Tensor


def _rank_chunk(queries: torch.Tensor, labels: torch.Tensor, begin: int, gallery: _Gallery, exclude_self: bool,
                sim_buf: torch.Tensor, mask_buf: torch.Tensor):
    """Outcomes of one chunk of queries: (first rank (0 = unanswerable), AP, tied, positives)."""
    c = len(labels)
    rows = torch.arange(c)
    pmax = int(gallery.count[labels].max())
    empty = torch.zeros(c, dtype=torch.int64)
    if pmax == 0:
        return empty, empty.double(), empty.bool(), empty
    slot = torch.arange(pmax)[None, :]
    pos_idx = gallery.by_label[(gallery.start[labels][:, None] + slot).clamp(max=len(gallery.by_label) - 1)]
    valid = slot < gallery.count[labels][:, None]
    if exclude_self:
        valid &= pos_idx != (rows + begin)[:, None]
    positives = valid.sum(1)
    ok = positives > 0
    if not bool(ok.any()):
        return empty, empty.double(), empty.bool(), positives
    sim = torch.mm(queries, gallery.columns, out=sim_buf[:c])
    sim[:, gallery.size :] = float("-inf")
    if exclude_self:
        sim[rows, rows + begin] = float("-inf")
    # unanswerable rows stay in the block with only +inf thresholds: nothing counts for them
    pos_sorted, _ = torch.where(valid, sim.gather(1, pos_idx), float("inf")).sort(dim=1)
    at_least = _count_at_least(sim, pos_sorted, mask_buf[:c], FULL_PASSES)
    valid_sorted = slot < positives[:, None]
    # positives at or above each one (+inf padding counted out), then the negatives at or above it
    neg_at_least = at_least - (positives[:, None] - torch.searchsorted(pos_sorted, pos_sorted))
    top = (positives - 1).clamp(min=0)[:, None]
    best = neg_at_least.gather(1, top).squeeze(1)  # negatives ranked above the best positive
    k_rank = positives[:, None] - slot  # rank among positives, from the top
    contrib = torch.where(valid_sorted, k_rank / (k_rank + neg_at_least).clamp(min=1).double(), 0.0)
    # a tie that decided the first rank: some negative scores exactly like the best positive
    sim[rows[:, None].expand_as(valid)[valid], pos_idx[valid]] = float("-inf")
    tie = torch.eq(sim, pos_sorted.gather(1, top), out=mask_buf[:c]).any(1)
    return (torch.where(ok, best + 1, 0), torch.where(ok, contrib.sum(1) / positives.clamp(min=1), 0.0),
            ok & tie, positives)


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
    query_unit = F.normalize(query.float(), dim=1)
    gallery_unit = F.normalize(gallery.float(), dim=1)
    _, inverse = torch.unique(torch.cat([query_labels.long(), gallery_labels.long()]), return_inverse=True)
    query_ids, gallery_ids = inverse[: len(query_unit)], inverse[len(query_unit) :]
    count = torch.bincount(gallery_ids, minlength=int(inverse.max()) + 1 if len(inverse) else 1)
    columns = torch.zeros(gallery_unit.shape[1], -(-gallery_unit.shape[0] // 8) * 8)
    columns[:, : gallery_unit.shape[0]] = gallery_unit.T
    prepared = _Gallery(columns, gallery_unit.shape[0], torch.argsort(gallery_ids, stable=True), count.cumsum(0) - count,
                        count)
    chunk = min(chunk or max(1, budget // max(1, gallery_unit.shape[0])), max(1, query_unit.shape[0]))
    sim_buf = torch.empty(chunk, columns.shape[1])  # reused by every chunk
    mask_buf = torch.empty(chunk, columns.shape[1], dtype=torch.bool)
    if query_unit.shape[0] == 0:
        raise ValueError("retrieval metrics need at least one query")
    parts = [_rank_chunk(query_unit[b : b + chunk], query_ids[b : b + chunk], b, prepared, exclude_self, sim_buf,
                         mask_buf) for b in range(0, query_unit.shape[0], chunk)]
    first_rank, ap, tied, positives = (torch.cat(column) for column in zip(*parts))
    answered = first_rank > 0
    n = max(int(answered.sum()), 1)
    gallery_size = max(gallery_unit.shape[0] - (1 if exclude_self else 0), 1)
    out = {f"top{k}": 100.0 * int((answered & (first_rank <= k)).sum()) / n for k in ks}
    out["mAP"] = 100.0 * float(ap[answered].sum()) / n
    out["queries"] = int(answered.sum())
    out["unanswerable_queries"] = int(query_unit.shape[0] - answered.sum())
    out["tied_queries"] = int(tied.sum())
    out["chance_top1"] = 100.0 * float((positives[answered].double() / gallery_size).sum()) / n
    out["per_query"] = {"first_rank": [int(r) if r > 0 else None for r in first_rank.tolist()],
                        "ap": [round(float(a), 6) if r > 0 else None for a, r in zip(ap.tolist(), first_rank.tolist())]}
    return out
