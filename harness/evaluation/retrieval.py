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
Exclusion (an ``Exclusion``): with ``query_keys`` / ``gallery_keys`` (one integer key per image) the
gallery items of the query's own identity whose key equals the query's are removed from that
query's gallery: they score -inf, so they are neither positives nor negatives. ``itself`` (the
disjoint protocol: query set == gallery set) is the case of one key per image, the query's own;
cross-day evaluation keys images by capture day. Queries whose identity has no image left in their gallery cannot be
answered; they are counted and left out of every metric.

Besides the metrics, every query's outcome is returned (``per_query``: the rank of its first
correct match and its average precision, None for unanswerable queries; the best-scoring gallery
item's similarity and position), so intervals, paired tests and open-set answers can be computed
later without the embeddings; ``outcomes`` holds the same unrounded, as arrays, for the metrics
registry. With ``top`` = k > 0, also each query's k best-scoring gallery items after exclusion
(``top``: positions in the gallery, -1 where fewer than k remain, and their similarities), for
the per-query logs; ``torch.topk`` over the similarity block the metrics already hold, so its
order among exactly tied scores is torch's, not the pessimistic one of ``first_rank``.
``chance_top1``: the expected top-1 of a random ranking on this test set (mean over
answerable queries of positives / that query's own gallery size).
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
    positives of label l are ``by_label[start[l] : start[l] + count[l]]``; ``keys``: each item's
    exclusion key (None: nothing excluded)."""

    columns: torch.Tensor  # (D, width)
    size: int
    by_label: torch.Tensor
    start: torch.Tensor
    count: torch.Tensor
    keys: torch.Tensor | None = None
    top: int = 0  # best-scoring items kept per query (0: none)


@dataclass
class _Chunk:
    """Per-query outcomes of one chunk (first rank 0 = unanswerable)."""

    first_rank: torch.Tensor
    ap: torch.Tensor
    tied: torch.Tensor
    positives: torch.Tensor
    best_score: torch.Tensor  # -inf: nothing left in the gallery
    best_index: torch.Tensor
    gallery_size: torch.Tensor  # the query's own gallery: all items minus the excluded ones
    top_score: torch.Tensor  # (c, k): the k best scores after exclusion, -inf past the gallery's end
    top_index: torch.Tensor  # (c, k)


def _positives(labels: torch.Tensor, keys: torch.Tensor | None, gallery: _Gallery, sim: torch.Tensor):
    """(gallery positions of each query's positives (c, P), valid mask (c, P), excluded count (c,)):
    excluded positives (same identity, same key) are set to -inf in ``sim`` and marked invalid."""
    pmax = int(gallery.count[labels].max())
    slot = torch.arange(pmax)[None, :]
    pos_idx = gallery.by_label[(gallery.start[labels][:, None] + slot).clamp(min=0, max=max(len(gallery.by_label) - 1, 0))]
    valid = slot < gallery.count[labels][:, None]
    excluded = torch.zeros(len(labels), dtype=torch.int64)
    if keys is not None and pmax:
        same = valid & (gallery.keys[pos_idx] == keys[:, None])
        sim[torch.arange(len(labels))[:, None].expand_as(same)[same], pos_idx[same]] = float("-inf")
        valid &= ~same
        excluded = same.sum(1)
    return pos_idx, valid, excluded


def _rank_chunk(queries: torch.Tensor, labels: torch.Tensor, keys: torch.Tensor | None, gallery: _Gallery,
                sim_buf: torch.Tensor, mask_buf: torch.Tensor) -> _Chunk:
    """Outcomes of one chunk of queries (``keys``: their exclusion keys, or None)."""
    c = len(labels)
    rows = torch.arange(c)
    sim = torch.mm(queries, gallery.columns, out=sim_buf[:c])
    sim[:, gallery.size :] = float("-inf")
    pos_idx, valid, excluded = _positives(labels, keys, gallery, sim)
    best_score, best_index = sim.max(1)  # after exclusion: the best item the query may match
    top_score, top_index = sim.topk(min(gallery.top, gallery.size), dim=1)
    positives = valid.sum(1)
    ok = positives > 0
    empty = torch.zeros(c, dtype=torch.int64)
    if not bool(ok.any()):
        return _Chunk(empty, empty.double(), empty.bool(), positives, best_score, best_index, gallery.size - excluded,
                      top_score, top_index)
    slot = torch.arange(pos_idx.shape[1])[None, :]
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
    return _Chunk(torch.where(ok, best + 1, 0), torch.where(ok, contrib.sum(1) / positives.clamp(min=1), 0.0),
                  ok & tie, positives, best_score, best_index, gallery.size - excluded, top_score, top_index)


def _prepare_gallery(gallery_unit: torch.Tensor, gallery_ids: torch.Tensor, n_labels: int,
                     keys: torch.Tensor | None, top: int) -> _Gallery:
    count = torch.bincount(gallery_ids, minlength=n_labels)
    columns = torch.zeros(gallery_unit.shape[1], -(-gallery_unit.shape[0] // 8) * 8)
    columns[:, : gallery_unit.shape[0]] = gallery_unit.T
    return _Gallery(columns, gallery_unit.shape[0], torch.argsort(gallery_ids, stable=True), count.cumsum(0) - count,
                    count, keys, top)


@dataclass(frozen=True)
class Exclusion:
    """The gallery items each query does not see: with ``itself`` its own image (query set ==
    gallery set); with ``query_keys`` / ``gallery_keys`` (one integer key per image, both or
    neither) the items of its identity whose key equals its own. The default excludes nothing."""

    itself: bool = False
    query_keys: torch.Tensor | None = None
    gallery_keys: torch.Tensor | None = None

    def keys(self, n_query: int, n_gallery: int):
        """(query keys, gallery keys) or (None, None): self-exclusion is one key per image."""
        if self.itself:
            if n_query != n_gallery or self.query_keys is not None:
                raise ValueError("excluding itself needs query set == gallery set and no other keys")
            return torch.arange(n_query), torch.arange(n_gallery)
        if (self.query_keys is None) != (self.gallery_keys is None):
            raise ValueError("exclusion keys are needed for both queries and gallery")
        if self.query_keys is None:
            return None, None
        return torch.as_tensor(self.query_keys).long(), torch.as_tensor(self.gallery_keys).long()


@torch.no_grad()
def retrieval_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    exclude: Exclusion = Exclusion(),
    chunk: int | None = None,
    ks: tuple[int, ...] = (1, 5),
    budget: int = DEFAULT_BUDGET,
    top: int = 0,
) -> dict:
    """top-k for ``ks``, mAP, counts and per-query outcomes of cosine retrieval of ``query``
    against ``gallery``, without the items ``exclude`` removes; ``chunk`` queries at a time
    (None: as many as ``budget`` similarity entries hold); with ``top`` > 0 each query's ``top``
    best gallery items too. See the module docstring."""
    if query.shape[0] == 0 or gallery.shape[0] == 0:
        raise ValueError("retrieval metrics need at least one query and one gallery image")
    query_unit = F.normalize(query.float(), dim=1)
    gallery_unit = F.normalize(gallery.float(), dim=1)
    _, inverse = torch.unique(torch.cat([query_labels.long(), gallery_labels.long()]), return_inverse=True)
    query_ids, gallery_ids = inverse[: len(query_unit)], inverse[len(query_unit) :]
    q_keys, g_keys = exclude.keys(len(query_unit), len(gallery_unit))
    prepared = _prepare_gallery(gallery_unit, gallery_ids, int(inverse.max()) + 1, g_keys, top)
    chunk = min(chunk or max(1, budget // max(1, gallery_unit.shape[0])), query_unit.shape[0])
    sim_buf = torch.empty(chunk, prepared.columns.shape[1])  # reused by every chunk
    mask_buf = torch.empty(chunk, prepared.columns.shape[1], dtype=torch.bool)
    parts = [_rank_chunk(query_unit[b : b + chunk], query_ids[b : b + chunk],
                         None if q_keys is None else q_keys[b : b + chunk], prepared, sim_buf, mask_buf)
             for b in range(0, query_unit.shape[0], chunk)]
    res = _Chunk(*(torch.cat([getattr(p, f) for p in parts]) for f in _Chunk.__dataclass_fields__))
    out = _summary(res, ks)
    if top:
        out["top"] = _top(res.top_score, res.top_index, top)
    return out


def _top(score: torch.Tensor, index: torch.Tensor, k: int) -> dict:
    """(n, k) gallery positions (-1: no item, the gallery smaller than k or excluded) and float32
    similarities (NaN there)."""
    n = score.shape[0]
    out_index = torch.full((n, k), -1, dtype=torch.int64)
    out_score = torch.full((n, k), float("nan"))
    kept = torch.isfinite(score)
    out_index[:, : score.shape[1]] = torch.where(kept, index, -1)
    out_score[:, : score.shape[1]] = torch.where(kept, score, float("nan"))
    return {"index": out_index.numpy(), "score": out_score.numpy()}


def _summary(res: _Chunk, ks: tuple[int, ...]) -> dict:
    first_rank, ap = res.first_rank, res.ap
    answered = first_rank > 0
    n = max(int(answered.sum()), 1)
    out = {f"top{k}": 100.0 * int((answered & (first_rank <= k)).sum()) / n for k in ks}
    out["mAP"] = 100.0 * float(ap[answered].sum()) / n
    out["queries"] = int(answered.sum())
    out["unanswerable_queries"] = int(len(first_rank) - answered.sum())
    out["tied_queries"] = int(res.tied.sum())
    own = res.gallery_size.clamp(min=1).double()
    out["chance_top1"] = 100.0 * float((res.positives[answered].double() / own[answered]).sum()) / n
    has_best = torch.isfinite(res.best_score)
    out["per_query"] = {"first_rank": [int(r) if r > 0 else None for r in first_rank.tolist()],
                        "ap": [round(float(a), 6) if r > 0 else None for a, r in zip(ap.tolist(), first_rank.tolist())],
                        "best_score": [round(float(s), 6) if f else None
                                       for s, f in zip(res.best_score.tolist(), has_best.tolist())],
                        "best_index": [int(i) if f else None for i, f in zip(res.best_index.tolist(), has_best.tolist())]}
    # unrounded, for the metrics registry (record values equal to the ones above, not to rounded ones)
    out["outcomes"] = {"first_rank": torch.where(answered, first_rank.double(), float("nan")).numpy(),
                       "ap": torch.where(answered, ap, float("nan")).numpy(),
                       "best_score": torch.where(has_best, res.best_score.double(), float("nan")).numpy()}
    return out
