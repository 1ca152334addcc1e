"""Open-set answers: each query gets its best match's identity, or "new" (None) when the best
match's similarity is below a threshold; the threshold is chosen on a calibration open set built
from training identities only (never from test images): the one that maximises sqrt(BAKS x BAUS)
there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import balanced

MAX_CANDIDATES = 1001  # thresholds tried: every distinct calibration score, or this many quantiles of them
RULE = "maximises sqrt(BAKS x BAUS) over the calibration queries' best-match scores"


@dataclass(frozen=True)
class Threshold:
    value: float  # best-match similarity >= value: answer the best match's identity; below: "new"
    calibration_gmean: float  # sqrt(BAKS x BAUS) in % on the calibration set at that value
    calibration_baks: float
    calibration_baus: float


def answer(best_score: np.ndarray, best_identity: np.ndarray, threshold: float) -> list:
    """The identity answered per query, None for "new" (also when a query has no best match)."""
    return [ident if np.isfinite(score) and score >= threshold else None
            for score, ident in zip(np.asarray(best_score, dtype=float), best_identity)]


def _candidates(scores: np.ndarray) -> np.ndarray:
    finite = np.unique(scores[np.isfinite(scores)])
    if len(finite) > MAX_CANDIDATES:
        finite = np.unique(np.quantile(finite, np.linspace(0, 1, MAX_CANDIDATES)))
    # one candidate above every score: everything answered "new"
    return np.append(finite, np.inf)


def choose_threshold(best_score, best_identity, identity, known) -> Threshold:
    """The threshold that maximises sqrt(BAKS x BAUS) on a calibration open set (its queries' best
    scores and identities, true identities, known flags); among equally good ones the middle one."""
    score = np.asarray(best_score, dtype=float)
    identity = np.asarray(identity, dtype=object)
    known = np.asarray(known, dtype=bool)
    if known.all() or not known.any():
        raise ValueError("a threshold needs calibration queries of known and of new individuals")
    right_match = np.array([b is not None and b == t for b, t in zip(best_identity, identity)])
    candidates = _candidates(score)
    results = []
    for t in candidates:
        said_known = np.isfinite(score) & (score >= t)
        baks = balanced(np.where(known, (said_known & right_match).astype(float), np.nan), identity)
        baus = balanced(np.where(known, np.nan, (~said_known).astype(float)), identity)
        results.append((float(np.sqrt(baks * baus)), baks, baus))
    gmeans = np.array([r[0] for r in results])
    best = np.flatnonzero(gmeans == gmeans.max())
    pick = int(best[len(best) // 2])
    return Threshold(float(candidates[pick]), *results[pick])
