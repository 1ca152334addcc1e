"""Evaluation: how a run's embeddings are scored (retrieval, gallery rules, open-set answers,
metrics, per-query top-k matches) and what its records are worth (intervals, paired tests,
calibration). Below the engine: it imports only core and data (the split it scores)."""
