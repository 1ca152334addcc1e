"""`harness report`: the static HTML site, over generated records (with per-query logs) and
generated images: its files, its forest plots and galleries, and the page in a real headless
Chromium (no console errors, the forest plot and a gallery drawn)."""
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.loaders import get_card, load_dataset
from harness.engine import records
from harness.evaluation import statistics
from harness.tables import leaderboard as lb
from harness.tables import report
from harness.tables.cells import cells, resolve_cell
from harness.tables.declarations import get_table

FOLDS, SEEDS = 5, 2


def _cell_configs(setting: str):
    """Table 1's main comparison in ``setting``: (row|col key, cell) of both sides."""
    table = get_table("1")
    wanted = table.comparisons[0]
    found = {f"{c.row}|{c.col}": c for c in cells(table, setting) if f"{c.row}|{c.col}" in wanted}
    return [found[key] for key in wanted]


def _record(cfg, fold: int, queries: dict, top1: float) -> dict:
    return {"schema": records.SCHEMA_VERSION, "name": records.result_name(cfg), "config": cfg.to_dict(),
            "config_origins": {"method": "the table's declaration"}, "seed": cfg.seed, "protocol": cfg.protocol,
            "split": {"fingerprint": f"fold-{fold}", "fold": fold, "folds": cfg.folds, "seed": cfg.split_seed,
                      "test_identities": len(set(queries["identity"]))},
            "keypoints": None, "metrics": {"top1": top1, "top5": min(100.0, top1 + 5), "mAP": top1 - 3,
                                           "chance_top1": 10.0},
            "queries": queries, "history": [{"epoch": 1, "loss": 1.0}], "wall_time_s": 1.0,
            "device": {"type": "cpu"}, "versions": {}, "git": {"commit": "0" * 40, "dirty": False},
            "created": "2026-01-01T00:00:00+00:00"}


def _small_records(folder: Path) -> None:
    """Both sides of Table 1's comparison in the small setting, 5 folds x 2 seeds, no images: the
    first side about 2 points ahead, so the answer is decided."""
    rng = np.random.default_rng(0)
    for side, cell in enumerate(_cell_configs("small")):
        for fold in range(FOLDS):
            ids = [f"m{fold}_{j}" for j in range(7) for _ in range(10)]
            for seed in range(SEEDS):
                cfg = resolve_cell(cell, seed, fold)
                hits = 56 + 3 * (side == 0) + int(rng.integers(-1, 2))  # of 70 queries
                ranks = [1 if i < hits else 2 for i in range(len(ids))]
                queries = {"image_id": [f"{fold}-{i}" for i in range(len(ids))], "identity": ids,
                           "first_rank": ranks, "ap": [1.0 / r for r in ranks]}
                record = _record(cfg, fold, queries, 100 * hits / len(ids))
                records.write_record(folder / f"{records.result_name(cfg)}.json", record)


def _top_matches(identities: np.ndarray, rng) -> np.ndarray:
    """Per query, 10 other test images, best first: its own animal's images usually scored higher."""
    n = len(identities)
    score = rng.normal(0, 1, (n, n)) + 1.5 * (identities[:, None] == identities[None, :])
    np.fill_diagonal(score, -np.inf)
    order = np.argsort(-score, axis=1)[:, :10]
    return order, np.take_along_axis(score, order, 1) / 4


def _tiny_record(folder: Path) -> str:
    """One tiny CKPE run of the same comparison, with a per-query log over the synthetic dataset's
    generated images; its name."""
    cfg = resolve_cell(_cell_configs("tiny")[0], 0, 0)
    data = load_dataset(get_card(cfg.dataset), dict(cfg.dataset_options))
    rows = np.flatnonzero(data.df["identity"].isin(sorted(set(data.df["identity"]))[:4]))
    ids = data.df["identity"].to_numpy()[rows].astype(str)
    image_ids = data.df["image_id"].astype(str).to_numpy()
    order, score = _top_matches(ids, np.random.default_rng(1))
    first = [next((k + 1 for k, j in enumerate(o) if ids[j] == ids[i]), None) for i, o in enumerate(order)]
    queries = {"image_id": image_ids[rows].tolist(), "identity": ids.tolist(), "first_rank": first,
               "best_identity": ids[order[:, 0]].tolist(), "best_score": score[:, 0].tolist()}
    record = _record(cfg, 0, queries, 100 * np.mean([f == 1 for f in first]))
    record["keypoints"] = {"categories": list(data.categories), "provenance": {"source": "annotation"}}
    path = folder / f"{records.result_name(cfg)}.json"
    record["query_log"] = records.write_query_log(records.query_log_path(path), {"rows": rows[order], "score": score},
                                                  queries["image_id"], image_ids, data.df["identity"].to_numpy())
    records.write_record(path, record)
    return path.stem


@pytest.fixture(scope="module")
def site():
    folder = Path(tempfile.mkdtemp(prefix="report-test-"))
    results = folder / "results"
    _small_records(results)
    name = _tiny_record(results)
    index = report.write_report(report.ReportSettings(results, folder / "site", queries=12))
    yield index, name
    shutil.rmtree(folder, ignore_errors=True)


def test_the_index_answers_first_with_a_forest_plot(site):
    index, _ = site
    text = index.read_text()
    answers, tables = text.index('id="answers"'), text.index('id="table-1"')
    assert answers < tables and "Table 1 (small): ours (CKPE) / MacaqueFaces vs ViT, no keypoints" in text
    assert "the first is ahead by" in text  # the generated 2-point effect, decided
    assert "real (the paper&#x27;s own setting: pretrained ViTs on a GPU): no runs yet" in text
    forest = text[answers:tables]
    # tables that reuse Table 1's cells (4, ...) point to its answer in words: each comparison is drawn once
    answered = forest.count("<li>Table ") - forest.count("answered there.</li>")
    assert answered >= 1 and forest.count('class="point"') == answered and forest.count('class="ci"') == answered
    assert 'id="calibration"' in text and 'href="runs/' in text


def test_the_site_fetches_nothing(site):
    index, name = site
    for page in (index, index.parent / "runs" / f"{name}.html"):
        text = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text) and "<link" not in text and "@import" not in text


def test_a_gallery_shows_each_query_with_its_top_5_and_keypoints(site):
    index, name = site
    page = index.parent / "runs" / f"{name}.html"
    text = page.read_text()
    queries = text.count('<div class="query ')
    assert queries == 12  # --queries
    assert text.count('<figure class="match ') == 12 * report.SHOWN_MATCHES
    assert 'class="query right"' in text and 'class="query wrong"' in text
    assert 'class="match ok"' in text and 'class="match bad"' in text
    assert text.count('class="kp"') >= 12  # the synthetic images' own keypoints, on every query
    thumbs = re.findall(r'(?:src|href)="(\.\./thumbs/[0-9a-f]+\.jpg)"', text)
    assert thumbs and all((page.parent / t).is_file() for t in thumbs)
    assert max(Image.open(page.parent / thumbs[0]).size) == 96
    assert 'id="failures"' in text and "<th>origin</th>" in text and "the table&#x27;s declaration" in text


def test_without_images_the_gallery_says_why(tmp_path, site):
    index, name = site
    results = index.parent.parent / "results"
    out = report.write_report(report.ReportSettings(results, tmp_path / "site", data_root=tmp_path / "nowhere",
                                                    runs=(name,), queries=3))
    text = (out.parent / "runs" / f"{name}.html").read_text()
    assert text.count('<div class="query ') == 3  # synthetic data is generated under any root: still pictures
    with pytest.raises(Exception, match="no record named nothing-such"):
        report.write_report(report.ReportSettings(results, tmp_path / "x", runs=("nothing-such",)))


def test_forest_svg_places_points_on_a_shared_scale():
    rows = [report.ForestRow("a", 0.0, (-1.0, 1.0)), report.ForestRow("b", 2.0, (1.0, 3.0), True),
            report.ForestRow("refused", None, None)]
    svg = report.forest_svg(rows, "top-1 points")
    cx = [float(v) for v in re.findall(r'<circle class="point" cx="([0-9.]+)"', svg)]
    zero = float(re.search(r'<line x1="([0-9.]+)"[^>]*stroke="#333"', svg).group(1))
    assert len(cx) == 2 and cx[0] == pytest.approx(zero) and cx[1] > zero
    assert svg.count('fill="#1f5fa8" stroke') == 1  # only the significant one is filled
    labels = re.findall(r'text-anchor="middle">([^<]*)</text>', svg)
    assert all(label.strip() for label in labels)  # no empty tick


def test_plain_verdicts_say_who_is_ahead_or_what_the_interval_excludes():
    table = get_table("1")
    small = next(s for s in lb.SETTINGS if s.name == "small")
    quiet = statistics.Paired(difference=-0.2, ci=(-0.9, 0.4))
    ahead = statistics.Paired(difference=2.1, ci=(1.0, 3.2), adjusted=True)
    assert ("no significant difference (-0.2 top-1 points, 95% CI -0.9 to +0.4): effects below -0.9 or above +0.4 "
            "are excluded") in lb.plain_verdict(lb.Answer(table, small, "x|y", "z|y", quiet))
    assert "the first is ahead by 2.1 top-1 points" in lb.plain_verdict(lb.Answer(table, small, "x|y", "z|y", ahead))
    pointed = lb.Answer(table, small, "x|y", "z|y", quiet, pointer="the same cells as Table 1's a - b (small): answered there")
    assert lb.plain_verdict(pointed).endswith(": the same cells as Table 1's a - b (small): answered there.")


def test_the_report_command(cli, site, tmp_path):
    index, name = site
    results = index.parent.parent / "results"
    result = cli("report", "--results-dir", results, "--output", tmp_path / "r", "--max-runs", "0")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "index.html").is_file() and not (tmp_path / "r" / "runs").exists()
    bad = cli("report", "--results-dir", results, "--output", tmp_path / "r", "--run", "nothing-such")
    assert bad.exit_code != 0 and "no record named nothing-such" in bad.output and "Traceback" not in bad.output


# --- a real headless browser (Debian's chromium + chromium-driver, selenium) ----------------------
def _chromium():
    """A headless Chromium through selenium, with a fresh profile and nothing reaching the network."""
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1600", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver_path), options=options)


def _not_blank(png: Path) -> bool:
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    return pixels.std() > 5 and (pixels < 128).mean() > 0.001


def test_the_site_in_a_headless_browser(site):
    index, name = site
    shots = Path(os.environ.get("REPORT_SCREENSHOTS") or index.parent)
    browser = _chromium()
    try:
        browser.get(index.as_uri())
        assert browser.find_elements("css selector", "svg.forest circle.point")
        assert browser.find_element("css selector", "svg.forest").size["width"] > 300
        browser.save_screenshot(str(shots / "index.png"))
        browser.get((index.parent / "runs" / f"{name}.html").as_uri())
        loaded = browser.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
        assert loaded >= 12 * report.SHOWN_MATCHES
        assert browser.execute_script("return document.querySelectorAll('svg image').length") == 12
        visible = "return Array.from(document.querySelectorAll('.query')).filter(q => q.offsetParent).length"
        everything = browser.execute_script(visible)
        browser.find_element("id", "failures").click()
        failures = browser.execute_script(visible)
        assert 0 < failures < everything
        browser.save_screenshot(str(shots / "gallery.png"))
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
    finally:
        browser.quit()
    assert _not_blank(shots / "index.png") and _not_blank(shots / "gallery.png")
