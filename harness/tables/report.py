"""`harness report`: a static HTML site of the results, for a person to look at.

``index.html`` opens from disk with no server and loads nothing from the internet (the CSS and the
failure filter's JavaScript are inline, the forest plots inline SVG): the answers first, as plain
sentences and a forest plot of the paired differences; then every table (its rows with results,
one line per setting for the rest, its own forest plot); the calibration; and the runs. Each run
with a per-query log (`<name>.topk.npz`, harness/engine/records.py) gets a page of its queries and
their top-5 matches, correct and wrong marked, with a filter to the failures, the keypoints drawn
on a KPE/CKPE query, and the run's configuration with where each value came from.

The statistics are the leaderboard's (``leaderboard.answers``, ``collect.paired_comparisons``): this
module only draws them. Thumbnails are read from the data root when the report is made and written
into the report's own folder, which is never committed (.gitignore).
"""
from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import DataError, RegistryError
from ..core.io import replace_atomic
from ..core.paths import REPO_ROOT
from ..data.dataset import ReidData, open_row
from ..data.loaders import get_card, load_dataset
from ..engine.records import load_records, read_query_log
from ..evaluation import metrics, statistics
from . import leaderboard as lb
from .collect import TableResult, collect_all, index_records, paired_comparisons
from .cells import cells
from .declarations import declared_tables
from .settings import SETTINGS

SHOWN_MATCHES = 5  # of the log's top-k, per query on a gallery page

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 1.5em;color:#222}
h1,h2,h3{line-height:1.2} table{border-collapse:collapse;margin:.5em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left} th{background:#f3f3f3}
.note{color:#555;font-size:13px} .answers li{margin:.3em 0}
svg.forest text{font:12px system-ui,sans-serif} .query{display:flex;gap:6px;margin:8px 0;align-items:flex-start}
figure{margin:0;text-align:center;font-size:11px;width:104px} figure img,figure svg{border:4px solid #bbb}
figure.ok img{border-color:#2a8a2a} figure.bad img{border-color:#c62828} .query.wrong>figure.q svg{border-color:#c62828}
.query.right>figure.q svg{border-color:#2a8a2a} .failures-only .query.right{display:none}
.missing{width:96px;height:96px;display:flex;align-items:center;justify-content:center;background:#eee;border:4px solid #bbb}
"""
FILTER_JS = """
document.getElementById('failures').addEventListener('change', function (e) {
  document.body.classList.toggle('failures-only', e.target.checked);
  var shown = document.querySelectorAll('.query:not(.right)').length;
  document.getElementById('shown').textContent = e.target.checked ? shown + ' failures shown' : '';
});
"""


@dataclass(frozen=True)
class ReportSettings:
    """What `harness report` renders: from ``results_dir`` into ``output`` (a folder); galleries of
    ``runs`` (names; empty: every run with a per-query log, up to ``max_runs``), ``queries`` per
    run, thumbnails of ``thumb`` pixels read from ``data_root``."""
    results_dir: Path
    output: Path
    data_root: Path | None = None
    runs: tuple[str, ...] = ()
    max_runs: int = 20
    queries: int = 60
    thumb: int = 96


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, script: str = "") -> str:
    """A whole HTML document: inline CSS, optional inline script, nothing fetched."""
    js = f"<script>{script}</script>" if script else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n{js}</body></html>\n")


# --- the forest plot ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ForestRow:
    label: str
    difference: float | None
    ci: tuple[float, float] | None
    significant: bool = False


def short(label: str, width: int = 62) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def forest_rows(pairs: list[tuple[str, statistics.Paired]]) -> list[ForestRow]:
    """(label, paired comparison) -> rows of a forest plot; refused pairs have no point."""
    return [ForestRow(short(label), None if p.refused else p.difference, p.ci if p.decided else None,
                      bool(p.decided and p.significant)) for label, p in pairs]


def _ticks(limit: float) -> list[float]:
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50, 100) if limit / s <= 4)
    count = int(limit // step)
    return [i * step for i in range(-count, count + 1)]


def forest_svg(rows: list[ForestRow], unit: str) -> str:
    """An inline SVG forest plot: one line per comparison, its difference (a dot, filled when
    significant) and 95% interval (a bar), a vertical line at 0; every tick labelled."""
    values = [abs(v) for r in rows for v in ((r.difference,) + tuple(r.ci or ())) if v is not None]
    limit = max(values + [1.0]) * 1.1
    left, width, height, top = 420, 330, 24, 8
    total = top + height * len(rows) + 40

    def x(value: float) -> float:
        return left + (value + limit) / (2 * limit) * width

    out = [f'<svg class="forest" xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{total}" '
           f'role="img" aria-label="paired differences with 95% intervals ({esc(unit)})">']
    bottom = top + height * len(rows)
    for tick in _ticks(limit):
        out.append(f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{bottom}" stroke="'
                   f'{"#333" if tick == 0 else "#e3e3e3"}"/><text x="{x(tick):.1f}" y="{bottom + 14}" '
                   f'text-anchor="middle">{tick:+g}</text>')
    out.append(f'<text x="{left + width / 2}" y="{bottom + 32}" text-anchor="middle">{esc(unit)} (first - second), '
               f'95% CI</text>')
    for i, row in enumerate(rows):
        y = top + height * i + height / 2
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(row.label)}<title>{esc(row.label)}'
                   "</title></text>")
        if row.ci is not None:
            out.append(f'<line class="ci" x1="{x(row.ci[0]):.1f}" y1="{y}" x2="{x(row.ci[1]):.1f}" y2="{y}" '
                       f'stroke="#1f5fa8" stroke-width="2"/>')
        if row.difference is not None:
            fill = "#1f5fa8" if row.significant else "#fff"
            out.append(f'<circle class="point" cx="{x(row.difference):.1f}" cy="{y}" r="5" fill="{fill}" '
                       f'stroke="#1f5fa8" stroke-width="2"/>')
    out.append("</svg>")
    return "".join(out)


def unit_of(metric: str) -> str:
    return f"{metrics.METRICS.get(metric).factory.label} points"


# --- the index page ----------------------------------------------------------------------------
def answers_html(results: list[TableResult]) -> str:
    found = lb.answers(results)
    items = "".join(f"<li>{esc(lb.plain_verdict(a))}</li>" for a in found) or "<li>No comparison has results yet.</li>"
    limits = "".join(f"<li>{esc(line)}</li>" for line in lb.setting_limits(results))
    plot = ""
    drawn = lb.drawn_answers(results)
    if drawn:
        rows = forest_rows([(f"Table {a.table.id} ({a.setting.name}): {a.side(a.a)} vs {a.side(a.b)}", a.pair)
                            for a in drawn])
        plot = forest_svg(rows, "points of each table's metric")
    return (f'<h2 id="answers">Answers</h2><ul class="answers">{items}</ul>{plot}'
            f'<p class="note">A filled dot: significant at 95%. The settings, and what their numbers can say:</p>'
            f"<ul>{limits}</ul>")


def table_html(result: TableResult) -> str:
    """One declared table: its rows with results, one line per setting for the rest, and its forest plot."""
    t = result.table
    out = [f'<h2 id="table-{esc(t.id)}">Table {esc(t.id)}: {esc(t.title)}</h2>']
    head = "<tr><th>row</th><th>column</th><th>setting</th><th>published</th><th>ours</th><th>95% CI</th><th>runs</th></tr>"
    rows, rest = [], []
    for setting in SETTINGS:
        got = [c for c in cells(t, setting.name) if result.cells[(setting.name, c.row, c.col)].records]
        for cell in got:
            res = result.cells[(setting.name, cell.row, cell.col)]
            summary = res.summary(t.metric)
            rows.append(f"<tr><td>{esc(cell.row)}</td><td>{esc(cell.col)}</td><td>{esc(setting.name)}</td>"
                        f"<td>{'–' if cell.paper is None else f'{cell.paper:g}'}</td><td>{summary.mean:.1f}</td>"
                        f"<td>{esc(lb._ci(summary))}</td><td>{esc(lb._runs(res))}</td></tr>")
        rest.append(f"<li>{esc(setting.name)}: {len(got)} of {len(result.table.rows) * len(result.table.cols)} cells "
                    f"have results</li>")
    if rows:
        out.append(f"<table>{head}{''.join(rows)}</table>")
    out.append(f"<ul class=\"note\">{''.join(rest)}</ul>")
    pairs = [(f"{s.name}: {a.replace('|', ' / ')} vs {b.replace('|', ' / ')}", p)
             for s in SETTINGS if s.plotted for a, b, p in paired_comparisons(result, s.name, t.metric)]
    if pairs:
        out.append(forest_svg(forest_rows(pairs), unit_of(t.metric)))
    return "".join(out)


def index_html(records: list[tuple[str, dict]], results: list[TableResult], run_links: list[str],
               without_log: int) -> str:
    toc = " · ".join(f'<a href="#table-{esc(r.table.id)}">Table {esc(r.table.id)}</a>' for r in results)
    calibration = "".join(f"<li>{esc(line)}</li>" for line in lb.calibration_lines(records, results))
    runs = "".join(f"<li>{link}</li>" for link in run_links) or "<li>No run has a per-query log here.</li>"
    body = [f"<h1>Results</h1><p class=\"note\">{len(records)} run records. {toc} · <a href=\"#calibration\">"
            "calibration</a> · <a href=\"#runs\">runs</a></p>", answers_html(results),
            *(table_html(r) for r in results),
            f'<h2 id="calibration">Calibration</h2><ul>{calibration or "<li>no records with identity folds</li>"}</ul>',
            f'<h2 id="runs">Runs: matches per query</h2><ul>{runs}</ul>'
            f'<p class="note">{without_log} other records have no gallery page: no per-query log (written before '
            "logs existed, or its file is missing), or beyond --max-runs.</p>"]
    return page("Results", "\n".join(body))


# --- the galleries -----------------------------------------------------------------------------
@dataclass
class Images:
    """Thumbnails of one dataset's images, written into the report's folder on first use; ``why``
    says why there are none (no data root, a loader error), shown instead of pictures."""
    data: ReidData | None
    folder: Path
    size: int
    why: str = ""
    rows: dict = field(default_factory=dict)  # image id -> dataset row
    made: dict = field(default_factory=dict)  # image id -> (link, scale) or None: each image read once

    def thumbnail(self, image_id: str) -> tuple[str, float] | None:
        """(link seen from a run's page, scale from image pixels) or None (no data, unreadable)."""
        image_id = str(image_id)
        if image_id not in self.made:
            self.made[image_id] = self._make(image_id)
        return self.made[image_id]

    def _make(self, image_id: str) -> tuple[str, float] | None:
        row = self.rows.get(image_id)
        if self.data is None or row is None:
            return None
        name = hashlib.sha1(f"{self.data.split_key}/{image_id}".encode()).hexdigest()[:16] + ".jpg"
        try:
            im = open_row(self.data, row)
        except (OSError, DataError):
            return None
        scale = self.size / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        replace_atomic(self.folder / name, lambda tmp: im.convert("RGB").save(tmp, format="JPEG", quality=80))
        return f"../thumbs/{name}", scale


def images_for(config: dict, settings: ReportSettings, cache: dict) -> Images:
    """The run's dataset loaded from the data root once per (dataset, options)."""
    key = json.dumps([config["dataset"], config.get("dataset_options") or {}], sort_keys=True)
    if key not in cache:
        folder = settings.output / "thumbs"
        try:
            data = load_dataset(get_card(config["dataset"]), dict(config.get("dataset_options") or {}), settings.data_root)
        except (DataError, RegistryError, OSError) as exc:
            cache[key] = Images(None, folder, settings.thumb, f"images not shown: {exc}")
        else:
            ids = data.df["image_id"].astype(str).tolist()
            cache[key] = Images(data, folder, settings.thumb, rows={i: n for n, i in enumerate(ids)})
    return cache[key]


def keypoints_for(record: dict, images: Images) -> tuple[dict, str]:
    """Points to draw on a KPE/CKPE query ({image id: [(category, x, y)]}, what they are): the
    keypoint set file the record names when it exists and the images are not perturbed, else the
    dataset's own annotation. The run's model saw these points in its own input frame (and, for a
    noise row, moved by noise), so they show where its keypoints come from, not each exact pixel."""
    kps = record.get("keypoints")
    if not kps or images.data is None:
        return {}, ""
    named = [v for v in _walk(kps.get("provenance")) if isinstance(v, str) and v.endswith(".json")]
    # a set file holds original-image pixels: right for images shown whole and unmoved only
    plain = images.data.perturbation is None and "bbox" not in images.data.df
    for name in named if plain else []:
        path = Path(name) if Path(name).is_absolute() else REPO_ROOT / name
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if raw.get("format") == "harness-keypoints":
            return ({i: [(c, *xy) for c, xy in p.items() if xy] for i, p in raw["points"].items()},
                    f"keypoints from {name}")
    if images.data.keypoints is None:
        return {}, ""
    ids = images.data.df["image_id"].astype(str).tolist()
    cats = images.data.categories
    return ({i: [(c, *xy) for c, xy in zip(cats, images.data.keypoints[n].tolist()) if np.isfinite(xy).all()]
             for n, i in enumerate(ids)}, "keypoints: the dataset's own annotation")


def _walk(value):
    """Every leaf of nested dicts and lists."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def query_figure(image_id: str, identity: str, images: Images, points: list) -> str:
    """The query: its thumbnail with its keypoints drawn over it (inline SVG), or a grey box."""
    thumb = images.thumbnail(image_id)
    caption = f"<figcaption>query {esc(image_id)}<br>{esc(identity)}</figcaption>"
    if thumb is None:
        return f'<figure class="q"><div class="missing">{esc(identity)}</div>{caption}</figure>'
    src, scale = thumb
    dots = "".join(f'<circle class="kp" cx="{x * scale:.1f}" cy="{y * scale:.1f}" r="3" fill="#ffd400" '
                   f'stroke="#000"><title>{esc(c)}</title></circle>' for c, x, y in points)
    n = images.size
    return (f'<figure class="q"><svg xmlns="http://www.w3.org/2000/svg" width="{n}" height="{n}">'
            f'<image href="{src}" x="0" y="0" width="{n}" height="{n}" preserveAspectRatio="xMinYMin meet"/>'
            f"{dots}</svg>{caption}</figure>")


def match_figure(image_id: str, identity: str, score: float, correct: bool, images: Images) -> str:
    thumb = images.thumbnail(image_id)
    mark = "ok" if correct else "bad"
    picture = (f'<img src="{thumb[0]}" alt="{esc(image_id)}" width="{images.size}">' if thumb
               else f'<div class="missing">{esc(identity)}</div>')
    sign = "✓" if correct else "✗"
    return (f'<figure class="match {mark}">{picture}<figcaption>{sign} {esc(identity)}<br>'
            f"{score:.3f}</figcaption></figure>")


def query_correct(queries: dict, i: int) -> bool:
    """Top-1 right (closed set), or the open-set answer right: the identity for a known animal,
    "new" for a new one."""
    if "predicted" in queries:
        known = queries["known"][i]
        return queries["predicted"][i] == queries["identity"][i] if known else queries["predicted"][i] is None
    return queries["first_rank"][i] == 1


def gallery_html(record: dict, log: dict, images: Images, limit: int) -> str:
    """The run's queries (the first ``limit``), each with its best matches."""
    queries = record["queries"]
    points, about = keypoints_for(record, images)
    blocks = []
    for i in range(min(limit, len(queries["image_id"]))):
        qid, ident = queries["image_id"][i], queries["identity"][i]
        right = query_correct(queries, i)
        answer = ""
        if "decision" in log:
            answer = f"<p class=\"note\">answer: {esc(log['decision'][i] or 'new')}</p>"
        matches = "".join(match_figure(m, who, s, who == ident, images)
                          for m, who, s in zip(log["image_id"][i][:SHOWN_MATCHES], log["identity"][i][:SHOWN_MATCHES],
                                               log["score"][i][:SHOWN_MATCHES]) if m)
        blocks.append(f'<div class="query {"right" if right else "wrong"}">'
                      f"{query_figure(qid, ident, images, points.get(str(qid), []))}{matches}{answer}</div>")
    shown = f"the first {min(limit, len(queries['image_id']))} of {len(queries['image_id'])} queries"
    notes = "; ".join(x for x in (shown, about, images.why) if x)
    return (f'<p class="note">{esc(notes)}. A green frame: the same animal; red: another. '
            f'<label><input type="checkbox" id="failures"> failures only</label> <span id="shown"></span></p>'
            f'<div class="gallery">{"".join(blocks)}</div>')


def config_html(record: dict) -> str:
    origins = record.get("config_origins") or {}
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(json.dumps(v))}</td><td>{esc(origins.get(k, '–'))}</td></tr>"
                   for k, v in sorted(record["config"].items()))
    return (f'<h2>Configuration</h2><p class="note">origin: where a value came from (the command line, a dataset '
            f"card, a default); – where the record does not say (sweeps record the table's declaration).</p>"
            f"<table><tr><th>field</th><th>value</th><th>origin</th></tr>{rows}</table>")


def run_page(name: str, record: dict, log: dict, images: Images, limit: int) -> str:
    m = record["metrics"]
    shown = ", ".join(f"{metrics.METRICS.get(k).factory.label} {m[k]:.1f}" for k in metrics.ORDER
                      if m.get(k) is not None)
    body = (f'<p><a href="../index.html">all results</a></p><h1>{esc(name)}</h1>'
            f"<p>{esc(record['config']['method'])} on {esc(record['config']['dataset'])}, {esc(record['protocol'])} "
            f"protocol, seed {record['seed']}: {esc(shown)}</p>{gallery_html(record, log, images, limit)}"
            f"{config_html(record)}")
    return page(name, body, FILTER_JS)


# --- the whole site ----------------------------------------------------------------------------
def chosen_runs(records: list[tuple[str, dict]], settings: ReportSettings) -> list[tuple[str, dict, dict]]:
    """(file name, record, per-query log) of the runs that get a gallery page."""
    wanted = set(settings.runs)
    names = {Path(n).stem for n, _ in records}
    unknown = sorted(wanted - names)
    if unknown:
        raise DataError(f"no record named {unknown[0]} in {settings.results_dir}; pass a record's file name "
                        "without .json")
    out = []
    for name, rec in records:
        if (wanted and Path(name).stem not in wanted) or not rec.get("query_log"):
            continue
        log = read_query_log(Path(settings.results_dir) / name, rec)
        if log is not None:
            out.append((name, rec, log))
    return out if wanted else out[: settings.max_runs]


def write_report(settings: ReportSettings) -> Path:
    """Render the site into ``settings.output``; returns its index.html."""
    records = load_records(Path(settings.results_dir))
    results = collect_all(declared_tables(), index_records(records))
    runs = chosen_runs(records, settings)
    cache: dict = {}
    links = []
    for name, rec, log in runs:
        stem = Path(name).stem
        html_text = run_page(stem, rec, log, images_for(rec["config"], settings, cache), settings.queries)
        replace_atomic(settings.output / "runs" / f"{stem}.html", lambda tmp, t=html_text: tmp.write_text(t))
        links.append(f'<a href="runs/{esc(stem)}.html">{esc(stem)}</a>')
    text = index_html(records, results, links, len(records) - len(runs))
    return replace_atomic(settings.output / "index.html", lambda tmp: tmp.write_text(text))
