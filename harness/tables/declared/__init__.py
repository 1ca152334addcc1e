"""The declared tables, one module each: the paper's Tables 1-7, the task tables (another day, new
individuals) and the controls (pose-perturbed faces, noisy points, the known-answer control, a
pretrained trunk). A module builds its ``Table`` as data and registers it with ``declare``
(``harness/tables/declarations.py``); ``_parts.py`` holds the rows and options several tables share.
A table from elsewhere is one more module: a file on HARNESS_PLUGIN_PATH or a package behind the
``harness.tables`` entry-point group."""
