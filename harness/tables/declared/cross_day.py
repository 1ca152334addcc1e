"""Another day: Table 1's MacaqueFaces rows with same-day frames of the query's animal out of its
gallery."""
from __future__ import annotations

from ..declarations import declare
from ._parts import task_table

TABLE = declare(task_table(
    "cross-day", "Another day: Table 1 with same-day frames of the query's animal out of its gallery (top-1 %)",
    {"exclude": "same-day"}, tiny={"dataset_options": {"sessions": "3"}},  # synthetic capture days
    order=70,
    note="MacaqueFaces images are frames of short sessions: with the whole gallery a query's own day answers it. "
         "Here each query's gallery holds no image of its own animal from the same day (`--exclude same-day`): "
         "re-identification on another day. The runs are Table 1's: one training is scored under both gallery "
         "rules and writes both records. Datasets without capture dates cannot run this table."))
