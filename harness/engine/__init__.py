"""The engine: one run (train, evaluate, record), and reading the records back."""
