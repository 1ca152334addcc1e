"""benchmarks/gpu_check.py --tiny: the GPU check's every step runs on a CPU with tiny models, prints
one table with a row per check and appends the rows to the results log it is given."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import gpu_check  # noqa: E402

CHECKS = ["train nano", "train mini", "train micro", "dift", "sd", "default job", "randaugment epoch", "total"]


def test_tiny_gpu_check_prints_one_table_and_logs_every_row(tmp_path, capsys):
    log = tmp_path / "RESULTS.md"
    rows = gpu_check.run(tiny=True, results=log)
    out = capsys.readouterr().out.strip().splitlines()
    header, rule, *body = [line for line in out if line.startswith("|")]
    assert [c.strip() for c in header.strip("|").split("|")] == list(gpu_check.COLUMNS)
    assert rule == "|" + "---|" * len(gpu_check.COLUMNS)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in body]
    assert [c[0] for c in cells] == CHECKS and all(len(c) == len(gpu_check.COLUMNS) for c in cells)
    by = {r["check"]: r for r in rows}
    for name in CHECKS[:3]:
        assert float(by[name]["img/s"]) > 0 and float(by[name]["CKPE/plain"]) > 0  # timings: the benchmark's, not a test's
        assert "estimated" in by[name]["setting"]
    assert float(by["dift"]["img/s"]) > 0 and float(by["sd"]["img/s"]) > 0
    assert "float32" in by["dift"]["setting"] and "8 draws" in by["dift"]["setting"]
    for name in ("default job", "randaugment epoch"):
        assert by[name]["data wait"].endswith("%") and float(by[name]["img/s"]) > 0
    assert "augment randaugment" in by["randaugment epoch"]["setting"]
    logged = [line for line in log.read_text().splitlines() if "GPU check (tiny)" in line]
    assert [line.split(" | ")[1] for line in logged] == [f"GPU check (tiny): {c}" for c in CHECKS]


def test_full_check_without_a_gpu_is_one_line_pointing_at_tiny(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as info:
        gpu_check.run(tiny=False)
    assert "needs a CUDA GPU" in str(info.value) and "--tiny" in str(info.value)
