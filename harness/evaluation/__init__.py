"""Evaluation: what a run's embeddings are scored by (metrics, protocols) and what its records are
worth (intervals, paired tests, calibration). Below the engine: it imports only core."""
