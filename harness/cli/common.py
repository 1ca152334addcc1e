"""Pieces every `harness` command group shares: one-line errors, KEY=VALUE options, and the
options several commands take (declared once, so their defaults cannot disagree)."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from ..core.errors import EXPECTED_ERRORS
from ..core.paths import DATA_ENV, DEFAULT_RESULTS_DIR, RESULTS_ENV


class HarnessCLIError(click.ClickException):
    pass


def user_errors(fn):
    """Turn expected failures (bad names, bad data, bad options, unwritable folders, failed API
    calls, a diverged run) into one-line click errors: a message and a non-zero exit, never a
    traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            raise HarnessCLIError(str(exc)) from exc

    return wrapper


def parse_kv(pairs, option: str = "--dataset-option") -> dict:
    out = {}
    for item in pairs:
        if "=" not in item:
            raise HarnessCLIError(f"{option} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def new_file(ctx, param, value):
    """An output file whose folder must exist: refused now, not after the work that writes it."""
    if value is not None and not Path(value).expanduser().parent.is_dir():
        raise click.BadParameter(f"{value}: the folder {Path(value).expanduser().parent} does not exist", ctx, param)
    return value


# a folder option refuses an existing file (click.Path's file_okay); a missing folder is made when written
results_dir_option = click.option(
    "--results-dir", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_RESULTS_DIR, show_default=True,
    envvar=RESULTS_ENV, help=f"where run records are read and written (env {RESULTS_ENV})")
data_root_option = click.option(
    "--data-root", type=click.Path(path_type=Path, file_okay=False), default=None, envvar=DATA_ENV,
    help=f"where datasets live: <data root>/<ClassName>/ (env {DATA_ENV}; default: the cache dir, env "
         "HARNESS_CACHE; synthetic data is generated there)")
dataset_options_option = click.option(
    "--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
    help="dataset loader option KEY=VALUE (repeatable), e.g. identities=80")
quiet_option = click.option("--quiet", is_flag=True, help="no progress bars")
