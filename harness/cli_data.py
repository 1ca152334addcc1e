"""`harness data ...`: where the real datasets are, and fetching them with wildlife-datasets' own
download code. Registered in harness/cli.py with ``main.add_command(data_group)``."""
from __future__ import annotations

from pathlib import Path

import click

from .cli_common import user_errors

DATA_ROOT_HELP = "where datasets live: <data root>/<ClassName>/ (env HARNESS_DATA; default: the cache dir, env HARNESS_CACHE)"


@click.group("data")
def data_group():
    """Real datasets: list what is present, download what is not."""


@data_group.command("list")
@click.option("--data-root", type=click.Path(path_type=Path), default=None, envvar="HARNESS_DATA", help=DATA_ROOT_HELP)
@user_errors
def list_cmd(data_root):
    """The datasets with cards, whether their data is present, and where it is expected."""
    from .data import DATASETS, data_problem, data_root_or_default
    from .wildlife import dataset_folder

    root = data_root_or_default(data_root)
    click.echo(f"data root: {root}")
    for entry in DATASETS:
        card = entry.factory()
        if card.loader != "wildlife":
            continue
        status = "present" if data_problem(card, root) is None else "missing"
        click.echo(f"  {card.name:<14} {card.source:<14} {status:<8} {dataset_folder(card, root)}")
    click.echo("get one: harness data download NAME|all [--data-root DIR]; any other wildlife-datasets class name works too")


@data_group.command("download")
@click.argument("name")
@click.option("--data-root", type=click.Path(path_type=Path), default=None, envvar="HARNESS_DATA", help=DATA_ROOT_HELP)
@click.option("--force", is_flag=True, help="download again even when the data is present")
@user_errors
def download_cmd(name, data_root, force):
    """Download NAME (a card, a wildlife-datasets class name, or `all`) into <data root>/<ClassName>/."""
    from .data import DataError, data_root_or_default, dataset_names, get_card
    from .wildlife import download

    root = data_root_or_default(data_root)
    failures = []
    for n in dataset_names(name):
        card = get_card(n)
        try:
            folder = download(card, root, force=force)
        except DataError as exc:
            failures.append(str(exc))
            continue
        click.echo(f"{card.name}: present in {folder}")
    if failures:
        raise DataError("\n".join(failures))
