"""New individuals: Table 1's MacaqueFaces rows under open-set identification."""
from __future__ import annotations

from ..declarations import declare
from ._parts import task_table

TABLE = declare(task_table(
    "open-set", "New individuals: open-set identification (sqrt(BAKS x BAUS) %)", {"protocol": "open"},
    metric="baks_baus_gmean",
    order=80,
    note="Half of each fold's test animals are new (no gallery image); a known animal's gallery is its earlier "
         "capture days. A query is answered with an identity or 'new' by a similarity threshold chosen on "
         "training identities held out from training (never on test images). The score is AnimalCLEF 2025's "
         "sqrt(BAKS x BAUS); the records also hold BAKS, BAUS and the new-individual AUROC."))
