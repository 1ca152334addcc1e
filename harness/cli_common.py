"""Pieces every `harness` command group shares: one-line errors and KEY=VALUE options."""
from __future__ import annotations

import functools

import click


class HarnessCLIError(click.ClickException):
    pass


def expected_errors() -> tuple[type[Exception], ...]:
    """The failures that are the user's to fix (bad names, data, options, folders, a diverged
    run): reported in one line, never as a traceback."""
    from .backbones import BackboneError
    from .data import DataError
    from .registry import RegistryError
    from .results import ResultsError

    return RegistryError, DataError, BackboneError, ResultsError, ValueError, FloatingPointError


def user_errors(fn):
    """Turn expected failures (bad names, bad data, bad options, unwritable folders, failed API
    calls) into one-line click errors: a message and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except expected_errors() as exc:
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
