"""Datasets: cards -> DataFrames (wildlife-datasets columns) -> splits; images decoded and cached."""
