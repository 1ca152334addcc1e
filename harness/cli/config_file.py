"""`--config FILE`: run options from a TOML or YAML file, whose keys are the run options (with -
or _), e.g.

    method = "ckpe"
    dataset = "folder:data/my_animals"
    batch-size = 16
    [dataset-options]      # or dataset_options = ["KEY=VALUE", ...]
    identities = 80

Each value is checked as its command-line option checks it; the values sit under the command line
(a flag given wins) and show under their own origin, ``config FILE``, in the printed configuration
and the record. TOML is read with the standard library (tomllib), YAML with PyYAML.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import click

try:
    import tomllib
except ImportError:  # Python 3.10: no tomllib in the standard library
    tomllib = None

from ..config import RunConfig
from .common import HarnessCLIError

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")


def config_option(fn):
    return click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, metavar="FILE",
                        help="run options from a TOML or YAML file (keys: the option names, e.g. batch-size = 16); "
                             "options given here win over it")(fn)


def parse_config_text(path: Path) -> dict:
    """The file's top-level mapping (TOML by .toml, YAML by .yaml/.yml); one-line errors."""
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise HarnessCLIError(f"--config {path}: expected a .toml, .yaml or .yml file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HarnessCLIError(f"--config {path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        if path.suffix.lower() == ".toml":
            if tomllib is None:
                raise HarnessCLIError(f"--config {path}: TOML needs Python 3.11 or later (tomllib); use a .yaml file")
            raw = tomllib.loads(text)
        else:
            import yaml  # noqa: PLC0415 - lazy: importing PyYAML costs start-up time every command would pay

            raw = yaml.safe_load(text)
    except HarnessCLIError:
        raise
    except Exception as exc:  # noqa: BLE001 - tomllib and yaml raise their own error types
        first = " ".join(str(exc).split())[:200]
        raise HarnessCLIError(f"--config {path}: not valid {path.suffix.lstrip('.').upper()}: {first}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HarnessCLIError(f"--config {path}: expected option = value pairs at the top level")
    return raw


def read_config_file(path: Path, ctx: click.Context, command: click.Command | None = None) -> tuple[str, dict]:
    """(origin, values) of a configuration file: each key a RunConfig field, each value converted
    by the option of ``command`` (default: the running one) of that name, so a file and a flag
    accept the same values."""
    params = {p.name: p for p in (command or ctx.command).params}
    fields = RunConfig.field_names()
    values = {}
    for key, value in parse_config_text(path).items():
        name = str(key).replace("-", "_")
        if name not in fields or name not in params:
            valid = [f for f in fields if f in params]
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0].replace('_', '-')}?" if close else \
                f"; valid: {', '.join(v.replace('_', '-') for v in valid)}"
            raise HarnessCLIError(f"--config {path}: unknown option {key!r}{hint}")
        values[name] = _converted(name, value, params[name], ctx, path)
    return f"config {path}", values


def _converted(name: str, value, param: click.Parameter, ctx: click.Context, path: Path):
    if name == "dataset_options":
        return _dataset_options(value, path)
    if isinstance(value, (dict, list)):
        raise HarnessCLIError(f"--config {path}: {name.replace('_', '-')} takes one value, got {value!r}")
    try:
        return param.type.convert(value, param, ctx)
    except click.BadParameter as exc:
        raise HarnessCLIError(f"--config {path}: {name.replace('_', '-')}: {exc.message}") from exc


def _dataset_options(value, path: Path) -> dict:
    """A table {KEY: VALUE} or a list of "KEY=VALUE" strings."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return dict(v.split("=", 1) for v in value)
    raise HarnessCLIError(f"--config {path}: dataset-options must be a table of KEY = VALUE or a list of "
                           f"\"KEY=VALUE\" strings, got {value!r}")
