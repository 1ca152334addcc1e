"""What every stage shares: registries, errors, paths, atomic files, process groups."""
