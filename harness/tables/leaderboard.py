"""leaderboard.md from results/ only: the declared tables (harness/tables.py), each cell's paper
number beside ours (mean +- std over seeds), with how ours was obtained. Deterministic: no
timestamps, everything in declaration or sorted order, so rendering twice changes nothing.

A record belongs to a cell when its config equals the cell's resolved config up to seed, device,
protocol and split seed. Records of a cell under another protocol or split seed, and records
whose split fingerprint differs from the one the table's other results on that data share, are
refused for the table with a message, never averaged in.
"""
from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig
from ..core.io import replace_atomic
from ..engine.records import load_records
from .declarations import TABLES, Cell, Table, cells, resolve_cell

IGNORED = ("seed", "device", "protocol", "split_seed")
SETTINGS = (("real", False), ("tiny", True))


def _key(config: dict) -> str:
    """A config's identity for matching: fields added to RunConfig after a record was written take
    their defaults, fields no longer in RunConfig are dropped."""
    defaults = RunConfig().to_dict()
    d = {k: config.get(k, defaults[k]) for k in defaults if k not in IGNORED}
    d["dataset_options"] = {str(k): str(v) for k, v in dict(d.get("dataset_options") or {}).items()}
    return json.dumps(d, sort_keys=True)


@dataclass
class CellResult:
    cell: Cell
    setting: str
    cfg: object = None
    records: list = field(default_factory=list)  # (file, record)

    @property
    def values(self) -> list[float]:
        return [float(r["metrics"]["top1"]) for _, r in self.records]


@dataclass
class TableResult:
    table: Table
    cells: dict = field(default_factory=dict)  # (setting, row, col) -> CellResult
    refused: list = field(default_factory=list)  # (setting, file, reason)


def collect(table: Table, records: list[tuple[str, dict]]) -> TableResult:
    by_key: dict[str, list] = {}
    for name, rec in records:
        by_key.setdefault(_key(rec["config"]), []).append((name, rec))
    out = TableResult(table)
    for setting, tiny in SETTINGS:
        for cell in cells(table, tiny=tiny):
            cell_result = CellResult(cell, setting)
            out.cells[(setting, cell.row, cell.col)] = cell_result
            if cell.overrides is None:
                continue
            cell_result.cfg = resolve_cell(cell)
            for name, rec in by_key.get(_key(cell_result.cfg.to_dict()), []):
                if rec["protocol"] != cell_result.cfg.protocol or rec["split"].get("seed") != cell_result.cfg.split_seed:
                    out.refused.append((setting, name, f"protocol {rec['protocol']}, split seed {rec['split'].get('seed')}; "
                                        f"this table uses {cell_result.cfg.protocol}, split seed {cell_result.cfg.split_seed}"))
                else:
                    cell_result.records.append((name, rec))
        # one split per data set within a table: the fingerprint most results share wins
        groups: dict[str, Counter] = {}
        for (s, _, _), cell_result in out.cells.items():
            if s == setting and cell_result.cfg is not None:
                for _, rec in cell_result.records:
                    groups.setdefault(_data_key(cell_result.cfg), Counter())[rec["split"]["fingerprint"]] += 1
        for (s, _, _), cell_result in out.cells.items():
            if s != setting or cell_result.cfg is None:
                continue
            count = groups.get(_data_key(cell_result.cfg))
            if not count:
                continue
            best = sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            keep = []
            for name, rec in cell_result.records:
                fp = rec["split"]["fingerprint"]
                if fp == best:
                    keep.append((name, rec))
                else:
                    out.refused.append((setting, name, f"split fingerprint {fp[:8]} differs from {best[:8]}, the split "
                                        f"of this table's other results on {cell_result.cfg.dataset}"))
            cell_result.records = keep
    return out


def _data_key(cfg) -> str:
    return json.dumps([cfg.dataset, list(cfg.dataset_options), cfg.protocol, cfg.split_seed])


def _fmt(values: list[float]) -> str:
    if not values:
        return "not run"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {statistics.stdev(values):.1f}"


def _distinct(values) -> str:
    return ", ".join(sorted(set(values)))


def _commit(rec: dict) -> str:
    git = rec.get("git") or {}
    c = (git.get("commit") or "unknown")[:7]
    return c + ("+dirty" if git.get("dirty") else "")


def _backbone(rec: dict) -> str:
    c = rec["config"]
    return c["backbone"] + (" (pretrained)" if c.get("pretrained") else "")


def _tid(table: Table) -> str:
    return table.id.replace("-", "")


HEADER = """# Leaderboard

Generated by `harness leaderboard` from the run records in `results/` only; do not edit by hand
(`harness leaderboard --check` fails when this file is stale).

## How to read this

- One section per table of the paper (arXiv 2412.00818). Each line is one cell: the paper's
  top-1 accuracy (%) beside ours, the mean ± sample std over the seeds we ran (`seeds` = how
  many), and how ours was obtained: setting, protocol, split fingerprint (first 8 hex digits),
  backbone, and the commit(s) that produced the records (`+dirty`: uncommitted changes).
- `setting` **real** = the paper's configuration on the real dataset (`harness ablate TABLE`);
  **tiny** = its synthetic stand-in (`harness ablate TABLE --tiny`): built-in synthetic data,
  random-init tiny ViTs, a few epochs. Tiny numbers test the pipeline end to end; they say
  nothing about the paper's claims and are not comparable with the paper's numbers.
- `not run` = no result yet; the reason is given when the cell cannot run in that setting.
- Results whose protocol or split disagrees with the rest of their table are listed as refused
  under the table and left out of it.
"""


def render(results_dir: Path) -> tuple[str, list[TableResult]]:
    records = load_records(results_dir)
    results = [collect(t, records) for t in TABLES]
    counts = Counter(cell.setting for result in results for cell in result.cells.values() if cell.records)
    lines = [HEADER]
    if counts.get("real"):
        lines.append(f"**Status:** {counts['real']} cell(s) have real results; the rest are tiny or not run.\n")
    else:
        lines.append("**Status: every number of ours below comes from the synthetic tiny setting**; no real "
                     "run has been added to `results/` yet.\n")
    for table_result in results:
        lines += _render_table(table_result)
    return "\n".join(lines).rstrip() + "\n", results


def _render_table(table_result: TableResult) -> list[str]:
    t = table_result.table
    out = [f"## Table {t.id}: {t.title}", ""]
    if t.note:
        out += [t.note, ""]
    out += ["Reproduce:", "", "```bash",
            f"harness ablate {t.id} --seeds 3      # real: the paper's setting", f"harness ablate {t.id} --tiny       # tiny: synthetic smoke",
            "harness leaderboard", "```", ""]
    for setting, _ in SETTINGS:
        total = [cell_result for (s, _, _), cell_result in table_result.cells.items() if s == setting]
        done = sum(1 for cell_result in total if cell_result.records)
        out.append(f"- {setting}: {done} of {len(total)} cells run")
    out.append("")
    if t.plot:
        out += [f"![Table {t.id}: ours and the paper's](leaderboard-table{_tid(t)}.png)", ""]
    out += ["| row | column | paper | ours | seeds | setting | protocol | split | backbone | commit |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for cell in cells(t):
        paper = "–" if cell.paper is None else f"{cell.paper:.1f}"
        shown = False
        for setting, _ in SETTINGS:
            cell_result = table_result.cells[(setting, cell.row, cell.col)]
            if not cell_result.records:
                continue
            shown = True
            recs = [r for _, r in cell_result.records]
            out.append(f"| {cell.row} | {cell.col} | {paper} | {_fmt(cell_result.values)} | {len(recs)} | {setting} | "
                       f"{_distinct(r['protocol'] for r in recs)} | {_distinct(r['split']['fingerprint'][:8] for r in recs)} | "
                       f"{_distinct(_backbone(r) for r in recs)} | {_distinct(_commit(r) for r in recs)} |")
        if not shown:
            tiny = table_result.cells[("tiny", cell.row, cell.col)]
            why = f" (tiny: {tiny.cell.reason})" if tiny.cell.reason else ""
            out.append(f"| {cell.row} | {cell.col} | {paper} | not run{why} | 0 | – | – | – | – | – |")
    if table_result.refused:
        out += ["", "Refused for this table (not averaged in):", ""]
        out += [f"- {setting}: `{name}`: {why}" for setting, name, why in sorted(set(table_result.refused))]
    out.append("")
    return out


def plot(table_result: TableResult, path: Path) -> Path:
    """Accuracy vs the column value: the paper's (dashed) and ours per setting (solid), per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table_result.table
    xs = [float(c.label) for c in t.cols]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (row, paper) in enumerate(zip(t.rows, t.paper)):
        colour = colours[i % len(colours)]
        ax.plot(xs, paper, "--o", color=colour, label=f"paper {row.label}")
        for setting, marker in (("real", "s"), ("tiny", "^")):
            pts = [(x, table_result.cells[(setting, row.label, c.label)].values) for x, c in zip(xs, t.cols)]
            pts = [(x, v) for x, v in pts if v]
            if not pts:
                continue
            mean = [sum(v) / len(v) for _, v in pts]
            err = [statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in pts]
            ax.errorbar([x for x, _ in pts], mean, yerr=err, fmt="-" + marker, color=colour, capsize=3,
                        label=f"ours {row.label} ({setting})")
    ax.set_xlabel(t.plot.get("xlabel", "")), ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Table {t.id}", fontsize=10)
    ax.set_xticks(xs)
    ax.tick_params(axis="x", labelrotation=45)  # dense ticks (Table 3: 0, 50, 100, ...) stay readable
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    replace_atomic(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
    return path


def write(results_dir: Path, output: Path) -> list[Path]:
    text, results = render(results_dir)
    output = replace_atomic(Path(output), lambda tmp: tmp.write_text(text))
    written = [output]
    for table_result in results:
        if table_result.table.plot:
            written.append(plot(table_result, output.parent / f"leaderboard-table{_tid(table_result.table)}.png"))
    return written


def check(results_dir: Path, output: Path) -> str | None:
    """Why the file is stale, or None when it is up to date."""
    output = Path(output)
    text, results = render(results_dir)
    if not output.is_file():
        return f"{output} does not exist; run `harness leaderboard`"
    if output.read_text() != text:
        return f"{output} is stale (results/ changed since it was rendered); run `harness leaderboard`"
    for table_result in results:
        png = output.parent / f"leaderboard-table{_tid(table_result.table)}.png"
        if table_result.table.plot and not png.is_file():
            return f"{png} is missing; run `harness leaderboard`"
    return None
