"""The `harness` command line: one file per command group."""
