"""`harness data ...`: where the datasets are, and fetching them with wildlife-datasets' own
download code."""
from __future__ import annotations

import click

from ..core.errors import DataError
from ..core.paths import data_root_or_default
from ..data.cards import DATASETS, dataset_names
from ..data.loaders import data_location, data_problem, download_dataset, get_card
from .common import data_root_option, user_errors


@click.group("data")
def data_group():
    """Datasets: list what is present, download what is not."""


@data_group.command("list")
@data_root_option
@user_errors
def list_cmd(data_root):
    """The datasets with cards, whether their data is present, and where it is expected."""
    root = data_root_or_default(data_root)
    click.echo(f"data root: {root}")
    for entry in DATASETS:
        card = entry.factory()
        status = "present" if data_problem(card, root) is None else "missing"
        click.echo(f"  {card.name:<14} {card.wildlife_class or card.loader:<14} {status:<8} {data_location(card, root)}")
    click.echo("get one: harness data download NAME|all [--data-root DIR]; any other wildlife-datasets class name works too")


@data_group.command("download")
@click.argument("name")
@data_root_option
@click.option("--force", is_flag=True, help="download again even when the data is present")
@user_errors
def download_cmd(name, data_root, force):
    """Download NAME (a card, a wildlife-datasets class name, or `all`) into <data root>/<ClassName>/."""
    failures = []
    for n in dataset_names(name):
        card = get_card(n)
        try:
            folder = download_dataset(card, data_root, force=force)
        except DataError as exc:
            failures.append(str(exc))
            continue
        click.echo(f"{card.name}: present in {folder}")
    if failures:
        raise DataError("\n".join(failures))
