"""The declared tables: rows x columns -> run-config overrides, plus the published number per cell.
`harness ablate` sweeps them and `harness leaderboard` renders them.

Each table is one module of ``harness/tables/declared/`` that builds its ``Table`` as data and
registers it with ``declare``, like every other plugin kind: a table from elsewhere is a file on
HARNESS_PLUGIN_PATH or a package behind the ``harness.tables`` entry-point group; nothing here is
edited. Tables stand in the order of their ``order`` (ties: their id). Settings: ``settings.py``;
how a cell resolves: ``cells.py``.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..core.errors import RegistryError
from ..core.registry import Registry, did_you_mean, plugin_loader
from . import declared
from .cells import Table


def _load_tables() -> None:
    """The built-in table modules, then the plugin folders and the entry-point group."""
    for module in pkgutil.iter_modules(declared.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{declared.__name__}.{module.name}")
    plugin_loader("harness.tables")()


TABLES: Registry[Table] = Registry("table", loader=_load_tables)


def declare(table: Table) -> Table:
    """Register ``table`` under its id (a duplicate id is an error naming the first); returns it."""
    TABLES.register(table.id, table.title, factory=lambda: table)
    return table


def declared_tables() -> tuple[Table, ...]:
    """Every registered table, in order."""
    return tuple(sorted((entry.factory() for entry in TABLES), key=lambda t: (t.order, t.id)))


def table_ids() -> list[str]:
    return [t.id for t in declared_tables()]


def get_table(table_id: str) -> Table:
    """The table with this id or alias; unknown names are an error listing the valid ones."""
    for table in declared_tables():
        if table_id == table.id or table_id in table.aliases:
            return table
    raise RegistryError(f"unknown table {table_id!r}; valid: {', '.join(table_ids())}, all"
                        f"{did_you_mean(table_id, [*table_ids(), 'all'])}")
